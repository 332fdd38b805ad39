# Import, then de-identify every imported batch into a research DICOM store the module creates (its own
# dataset, same location), with DICOM tags filtered by the attribute confidentiality basic profile and
# burnt-in text left as is. Research users read the research store only, and pull its notifications.
module "dicomflow" {
  source = "../.."

  project_id     = var.project_id
  region         = var.region
  source_buckets = [{ name = var.source_bucket }]
  export_bucket  = { enabled = false }
  force_destroy  = var.force_destroy

  research = {
    enabled = true
    config = {
      dicom = { filterProfile = "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE" }
    }
  }

  # Object names can be patient data (folders named after the patient): logs show them as keyed hashes.
  log_hash_key_secret = var.log_hash_key_secret
  settings            = { log_object_names = "hashed" }
}

# The research users' own subscription: one message per de-identified instance stored (its resource name).
resource "google_pubsub_subscription" "research" {
  project                    = var.project_id
  name                       = "dicom-research-notifications-pull"
  topic                      = module.dicomflow.research_notification_topic
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

# Who may read the de-identified copies: DICOMweb read on the research store only, never on the source.
resource "google_healthcare_dicom_store_iam_member" "research_readers" {
  for_each = toset(var.research_readers)

  dicom_store_id = module.dicomflow.research_store
  role           = "roles/healthcare.dicomViewer"
  member         = each.value
}
