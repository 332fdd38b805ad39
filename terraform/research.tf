# De-identified research copies (var.research): after every imported batch of the default route the
# follow-up (on_operation) calls dicomStores.deidentify on the DICOM store with the batch's filter file
# (in the state bucket, like exports), writing de-identified copies into a research DICOM store that
# exists beforehand, in the same project and location. The target reaches the functions in
# EXPORT_TARGETS (main.tf, local.function_export_targets):
#   {"name": "research", "deidentify": {"store": "projects/P/locations/L/datasets/D/dicomStores/S",
#                                       "config": {...DeidentifyConfig...}}}   (or "config_uri": "gs://...")
#
# Grants (https://docs.cloud.google.com/healthcare-api/docs/access-control, "DICOM store methods":
# datasets.dicomStores.deidentify needs healthcare.dicomStores.deidentify on the source DICOM store and
# healthcare.dicomStores.dicomWebWrite on the destination DICOM store). Of the predefined roles only
# roles/healthcare.dicomStoreAdmin holds the first (with create, delete, setIamPolicy, ...) and
# roles/healthcare.dicomEditor the second (with import, export, delete, update, ...), so two custom roles
# hold exactly one permission each, granted on the one store each is for:
#   on_operation      healthcare.dicomStores.deidentify      -> custom role dicom_deidentifier on the source store
#                     healthcare.dicomStores.dicomWebWrite   -> custom role dicom_writer on the research store
#                     operations.get of the de-identify LRO  -> datasetViewer on the source dataset (iam.tf)
#   Healthcare agent  reads the batch's filter file           -> objectViewer on the state bucket (iam.tf)
#                     reads config_uri (gcsConfigUri)         -> objectViewer on that bucket (iam.tf)
#                     publishes the research notifications    -> publisher on the research topic
#                     CMEK of the research dataset and topic  -> the key grant of hardening.tf

locals {
  research_create = var.research.enabled && var.research.existing_store == null

  # Known at plan time (the environment does not wait for the store); null when research is off.
  research_store_name = !var.research.enabled ? null : (
    var.research.existing_store != null ? var.research.existing_store
    : "projects/${var.project_id}/locations/${local.healthcare_location}/datasets/${var.research.dataset_id}/dicomStores/${var.research.store_id}"
  )
  research_topic_id = local.research_create ? "projects/${var.project_id}/topics/${var.research.notification_topic}" : null

  # The bucket of config_uri, which the Healthcare service agent reads (iam.tf, healthcare_agent_bucket_grants).
  research_config_buckets = var.research.enabled && var.research.config_uri != null ? [regex("^gs://([^/]+)/", var.research.config_uri)[0]] : []

  # The deidentify export target: exactly one of config (the given one, else the default: DICOM tags
  # filtered by the attribute confidentiality basic profile) and config_uri.
  research_targets = !var.research.enabled ? [] : [{
    name = var.research.target_name
    deidentify = merge(
      { store = local.research_store_name },
      var.research.config_uri == null ? {} : { config_uri = var.research.config_uri },
      var.research.config == null ? {} : { config = var.research.config },
      var.research.config == null && var.research.config_uri == null ? { config = { dicom = { filterProfile = "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE" } } } : {},
    )
  }]
}

# ---------------------------------------------------------------------------------------------
# The research dataset, store and notification topic (unless research.existing_store)
# ---------------------------------------------------------------------------------------------

# De-identification writes across datasets of one location only: the research dataset is created in the
# source dataset's location. A dataset of its own lets research users be granted on it without any access
# to the identified data.
resource "google_healthcare_dataset" "research" {
  count = local.research_create ? 1 : 0

  project   = var.project_id
  name      = var.research.dataset_id
  location  = local.healthcare_location
  time_zone = var.healthcare.time_zone

  # As the source dataset: the key is fixed at creation (see var.kms_key_name).
  dynamic "encryption_spec" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_spec.value
    }
  }

  lifecycle {
    precondition {
      condition     = var.research.dataset_id != var.healthcare.dataset
      error_message = "The research.dataset_id must differ from healthcare.dataset: the research copies live in a dataset of their own."
    }
  }

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "research_notifications" {
  #checkov:skip=CKV_GCP_83:CMEK is optional (var.kms_key_name, default null: Google-managed encryption at rest); notifications carry de-identified instance resource names only.
  count = local.research_create ? 1 : 0

  project      = var.project_id
  name         = var.research.notification_topic
  labels       = local.labels
  kms_key_name = var.kms_key_name

  lifecycle {
    precondition {
      condition     = !contains(concat(values(local.topics), [var.store_notifications.topic, local.uploads_topic]), var.research.notification_topic)
      error_message = "The research.notification_topic must be a topic of its own, not one of the pipeline's topics or the source store's notification topic."
    }
  }

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

# The research store publishes one message per stored instance (its resource name) on its own topic, so
# that research users can chain their processing. send_for_bulk_import covers instances written by bulk
# operations (imports); whether de-identify writes notify is not documented: check it on the first batch.
resource "google_healthcare_dicom_store" "research" {
  count = local.research_create ? 1 : 0

  name    = var.research.store_id
  dataset = google_healthcare_dataset.research[0].id
  labels  = local.labels

  notification_config {
    pubsub_topic         = google_pubsub_topic.research_notifications[0].id
    send_for_bulk_import = var.research.send_for_bulk_import
  }

  depends_on = [google_pubsub_topic_iam_member.healthcare_agent_research_notifications]
}

resource "google_pubsub_topic_iam_member" "healthcare_agent_research_notifications" {
  count = local.research_create ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.research_notifications[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.healthcare.email}"
}

# ---------------------------------------------------------------------------------------------
# Custom roles and their grants, on the two stores only
# ---------------------------------------------------------------------------------------------

# Like the roles of hardening.tf: a deleted custom role keeps its id for 7-37 days, so turning research
# off and on again within that time needs `gcloud iam roles undelete` (the provider undeletes within 7).
resource "google_project_iam_custom_role" "dicom_deidentifier" {
  count = var.research.enabled ? 1 : 0

  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_dicom_deidentifier"
  title       = "dicomflow DICOM de-identifier"
  description = "Starts de-identification of a DICOM store (dicomStores.deidentify), nothing else: the dicomflow on_operation function, on the source store."
  permissions = ["healthcare.dicomStores.deidentify"]

  depends_on = [google_project_service.main]
}

resource "google_project_iam_custom_role" "dicom_writer" {
  count = var.research.enabled ? 1 : 0

  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_dicom_writer"
  title       = "dicomflow DICOM writer"
  description = "Writes instances into a DICOM store (dicomWebWrite), nothing else: dicomStores.deidentify needs it on the destination store (the dicomflow research store)."
  permissions = ["healthcare.dicomStores.dicomWebWrite"]

  depends_on = [google_project_service.main]
}

resource "google_healthcare_dicom_store_iam_member" "research_deidentify" {
  count = var.research.enabled ? 1 : 0

  dicom_store_id = google_healthcare_dicom_store.main.id
  role           = google_project_iam_custom_role.dicom_deidentifier[0].name
  member         = "serviceAccount:${google_service_account.function["on_operation"].email}"
}

resource "google_healthcare_dicom_store_iam_member" "research_write" {
  count = var.research.enabled ? 1 : 0

  dicom_store_id = local.research_create ? google_healthcare_dicom_store.research[0].id : var.research.existing_store
  role           = google_project_iam_custom_role.dicom_writer[0].name
  member         = "serviceAccount:${google_service_account.function["on_operation"].email}"

  lifecycle {
    # Rules between variables (variable validations see one variable only with Terraform 1.5).
    precondition {
      condition     = var.research.existing_store == null ? true : split("/", var.research.existing_store)[1] == var.project_id
      error_message = "The research.existing_store must be in project_id: de-identification writes within one project (and this module's custom role is granted in it)."
    }
    precondition {
      condition     = var.research.existing_store == null ? true : split("/", var.research.existing_store)[3] == local.healthcare_location
      error_message = "The research.existing_store must be in the source dataset's location (healthcare.location, default the region): de-identifying across locations is not supported."
    }
    precondition {
      condition     = local.research_store_name != "projects/${var.project_id}/locations/${local.healthcare_location}/datasets/${var.healthcare.dataset}/dicomStores/${var.healthcare.dicom_store}"
      error_message = "The research store must not be the source DICOM store."
    }
    precondition {
      condition     = !contains([for t in var.settings.export_targets : t.name], var.research.target_name)
      error_message = "The research.target_name is already the name of one of settings.export_targets: export target names must be unique."
    }
  }
}
