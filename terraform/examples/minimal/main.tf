# Import only: uploads to one new bucket are imported into a new DICOM store; no exports. Alerts go
# to an e-mail address when alert_email is set (monitoring is on by default either way).
resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == null ? 0 : 1

  project      = var.project_id
  display_name = "dicomflow alerts (${var.alert_email})"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
}

module "dicomflow" {
  source = "../.."

  project_id     = var.project_id
  region         = var.region
  source_buckets = [{ name = var.source_bucket }]
  export_bucket  = { enabled = false }
  force_destroy  = var.force_destroy

  notification_channels = google_monitoring_notification_channel.email[*].id

  # Object names can be patient data (folders named after the patient): logs show them as keyed hashes.
  log_hash_key_secret = var.log_hash_key_secret
  settings            = { log_object_names = "hashed" }
}
