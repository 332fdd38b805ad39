# Hardening that is not one resource's own setting: customer-managed keys (var.kms_key_name), Data
# Access audit logs (var.data_access_audit_logs), the custom role that is exactly the flush's job, and
# the check of reused buckets (var.reused_bucket_checks).

locals {
  # The service agents that encrypt and decrypt with the key: Cloud Storage (buckets), Healthcare (the
  # dataset), Pub/Sub (the topics).
  kms_agents = var.kms_key_name == null ? {} : {
    storage    = data.google_storage_project_service_account.main.email_address
    healthcare = google_project_service_identity.healthcare.email
    pubsub     = google_project_service_identity.pubsub.email
  }

  # Buckets the module reuses (create = false) rather than creates.
  reused_buckets = setsubtract(toset(concat(
    [for name, b in local.source_buckets : name if !b.create],
    var.state_bucket.create ? [] : [local.state_bucket_name],
    var.export_bucket.enabled && !var.export_bucket.create ? [local.export_bucket_name] : [],
  )), keys(local.created_buckets))

  audited_services = var.data_access_audit_logs ? toset(["healthcare.googleapis.com", "storage.googleapis.com"]) : toset([])
}

# ---------------------------------------------------------------------------------------------
# Customer-managed encryption keys
# ---------------------------------------------------------------------------------------------

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = local.kms_agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${each.value}"
}

# ---------------------------------------------------------------------------------------------
# Data Access audit logs: who read or wrote which DICOM instance and which object
# ---------------------------------------------------------------------------------------------

resource "google_project_iam_audit_config" "data_access" {
  for_each = local.audited_services

  project = var.project_id
  service = each.value

  audit_log_config {
    log_type = "ADMIN_READ"
  }
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

# ---------------------------------------------------------------------------------------------
# Custom roles: exactly what the flush and the follow-up do on a store
# ---------------------------------------------------------------------------------------------

# roles/healthcare.dicomEditor would also let it store, change and delete instances. A project-level
# custom role can only be granted on resources of its own project: route stores in other projects get
# the predefined roles (iam.tf, function_store_roles_elsewhere). A deleted custom role keeps its id for 37 days: a destroy and re-apply within
# that time needs another name_prefix (or `gcloud iam roles undelete`).
resource "google_project_iam_custom_role" "dicom_importer" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_dicom_importer"
  title       = "dicomflow DICOM importer"
  description = "Starts imports into a DICOM store (dicomStores.import), nothing else: the dicomflow flush function."
  permissions = ["healthcare.dicomStores.import"]

  depends_on = [google_project_service.main]
}

# The follow-up reads the per-file errors the Healthcare API logs for a finished import (Cloud Logging
# entries.list on the project: dicomflow/reconcile/logged_reasons.py). roles/logging.viewer also reads sinks,
# metrics, buckets and views; this role holds only the entries read.
resource "google_project_iam_custom_role" "log_reader" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_log_reader"
  title       = "dicomflow log reader"
  description = "Reads log entries (entries.list), nothing else: the dicomflow follow-up reads the Healthcare API's per-file import errors."
  permissions = ["logging.logEntries.list"]

  depends_on = [google_project_service.main]
}

# The follow-up reads the store through DICOMweb (QIDO-RS, WADO-RS), starts exports and, with
# conflict_policy "replace", deletes a conflicting instance: roles/healthcare.dicomViewer and dicomEditor
# hold much more (store metadata, listing, storing, editing).
resource "google_project_iam_custom_role" "dicom_follower" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_dicom_follower"
  title       = "dicomflow DICOM follow-up"
  description = "Reads instances through DICOMweb, starts exports${var.settings.conflict_policy == "replace" ? ", deletes a conflicting instance" : ""}: the dicomflow on_operation function."
  permissions = concat(
    ["healthcare.dicomStores.dicomWebRead", "healthcare.dicomStores.export"],
    var.settings.conflict_policy == "replace" ? ["healthcare.dicomStores.dicomWebDelete"] : [],
  )

  depends_on = [google_project_service.main]
}

# ---------------------------------------------------------------------------------------------
# Reused buckets: the same access settings as the buckets the module creates
# ---------------------------------------------------------------------------------------------

data "google_storage_bucket" "reused" {
  for_each = var.reused_bucket_checks ? local.reused_buckets : toset([])

  name    = each.key
  project = var.project_id

  lifecycle {
    postcondition {
      condition     = self.uniform_bucket_level_access == true
      error_message = "The reused bucket ${each.key} lacks uniform bucket-level access: object ACLs could expose files, and the module's conditional grants need it. Turn it on (gcloud storage buckets update gs://${each.key} --uniform-bucket-level-access) or set reused_bucket_checks = false."
    }
    postcondition {
      condition     = self.public_access_prevention == "enforced"
      error_message = "The reused bucket ${each.key} does not enforce public access prevention (it is \"${coalesce(self.public_access_prevention, "unset")}\"). Enforce it (gcloud storage buckets update gs://${each.key} --public-access-prevention) or set reused_bucket_checks = false."
    }
  }
}
