# Import, then export every imported batch three ways: stored DICOM and rendered PNG frames to the
# export bucket the module creates, and the DICOM metadata to a BigQuery table.
locals {
  export_bucket = "${var.project_id}-dicomflow-export"
}

# The Healthcare API creates the table on the first export; the dataset must exist.
resource "google_bigquery_dataset" "dicom" {
  #checkov:skip=CKV_GCP_81:Example dataset with Google-managed encryption; set default_encryption_configuration with your KMS key in production.
  project                    = var.project_id
  dataset_id                 = "dicomflow_metadata"
  location                   = var.bigquery_location
  description                = "DICOM metadata exported by dicomflow after each imported batch."
  delete_contents_on_destroy = var.force_destroy
}

module "dicomflow" {
  source = "../.."

  project_id     = var.project_id
  region         = var.region
  source_buckets = [{ name = var.source_bucket }]
  export_bucket  = { name = local.export_bucket }
  force_destroy  = var.force_destroy

  # Object names can be patient data (folders named after the patient): logs show them as keyed hashes.
  log_hash_key_secret = var.log_hash_key_secret

  settings = {
    log_object_names = "hashed"
    export_targets = [
      { name = "dicom", gcs = "gs://${local.export_bucket}/dicom", mime_type = "application/dicom" },
      { name = "png", gcs = "gs://${local.export_bucket}/png", mime_type = "image/png" },
      {
        name              = "bq"
        bigquery          = "bq://${google_bigquery_dataset.dicom.project}.${google_bigquery_dataset.dicom.dataset_id}.instances"
        write_disposition = "WRITE_APPEND"
      },
    ]
  }
}
