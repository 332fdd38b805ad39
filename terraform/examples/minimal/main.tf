# Import only: uploads to one new bucket are imported into a new DICOM store; no exports.
module "dicomflow" {
  source = "../.."

  project_id     = var.project_id
  region         = var.region
  source_buckets = [{ name = var.source_bucket }]
  export_bucket  = { enabled = false }
  force_destroy  = var.force_destroy
}
