# Identities and grants. Additive *_iam_member resources only, on the narrowest resource that
# works (bucket, topic, subscription, DICOM store, dataset, service account). The few project-level
# grants are the ones Google offers at project level only; each says why.
#
# Who does what (see handlers/ and dicomflow/adapters/):
#   on_object_finalized  reads source objects (ranged reads)         -> objectViewer on source buckets
#                        publishes pending records / failures        -> publisher on pending, failed
#                        notes each failure (failed/)                -> objectUser on the state bucket, conditioned
#                                                                       on the bucket and objects under failed/
#   on_flush             pulls, acks, extends leases                 -> subscriber on the pending subscription
#                        lists source objects, copies them (rewrite) -> objectViewer on source buckets
#                        manifests, in-flight marks, staged copies   -> objectUser on the state bucket
#                        dicomStores.import                          -> custom role dicom_importer on the store
#                                                                       (dicomEditor on route stores of other projects)
#                        dead-letters poison pending messages        -> publisher on pending-dead-letter
#                        publishes watches / failures                -> publisher on operations, failed
#   on_operation         operations.get                              -> datasetViewer on the dataset
#                        per-file import errors (Cloud Logging)      -> custom role log_reader on the project
#                                                                       (logging.viewer in route projects: entries
#                                                                       are logged where the store is)
#                        QIDO-RS, WADO-RS, dicomStores.export        -> custom role dicom_follower on the store
#                        with conflict_policy "replace": DICOMweb
#                        DELETE of a conflicting instance            -> the same role adds dicomWebDelete
#                                                                       (predefined dicomViewer / dicomEditor on route
#                                                                       stores of other projects)
#                        state objects, filter files, staged copies  -> objectUser on the state bucket
#                        checks a missing file's source still exists -> objectViewer on source buckets
#                        re-drives, failures, results, export watches-> publisher on pending, failed, results, operations
#   invoker              Eventarc triggers and the push subscription -> run.invoker on the three services,
#                                                                       eventarc.eventReceiver (project)
#   Healthcare agent     reads imports (in place and staged), filters -> objectViewer on source + state buckets
#                        writes exports                              -> objectAdmin on export buckets (+ BigQuery)
#                        reads research.config_uri                   -> objectViewer on its bucket
#   Research copies (research.tf): on_operation's de-identify and research-store write grants.

locals {
  function_topics = {
    on_object_finalized = ["pending", "failed"]
    on_flush            = ["operations", "failed", "pending_dead_letter"]
    on_operation        = ["pending", "failed", "results", "operations"]
  }
  function_topic_grants = merge([
    for fn, topics in local.function_topics : { for topic in topics : "${fn} ${topic}" => { function = fn, topic = topic } }
  ]...)

  function_bucket_grants = merge(
    { for b in local.source_bucket_names : "on_object_finalized ${b} viewer" => { function = "on_object_finalized", bucket = b, role = "roles/storage.objectViewer" } },
    { for b in local.source_bucket_names : "on_flush ${b} viewer" => { function = "on_flush", bucket = b, role = "roles/storage.objectViewer" } },
    { for b in local.source_bucket_names : "on_operation ${b} viewer" => { function = "on_operation", bucket = b, role = "roles/storage.objectViewer" } },
    { "on_flush ${local.state_bucket_name} user" = { function = "on_flush", bucket = local.state_bucket_name, role = "roles/storage.objectUser" } },
    { "on_operation ${local.state_bucket_name} user" = { function = "on_operation", bucket = local.state_bucket_name, role = "roles/storage.objectUser" } },
  )

  # Objects intake may touch in the state bucket: its failure notes (dicomflow/ledger/failures.py), and the
  # bucket itself (listing them).
  intake_state_condition = join(" || ", [
    "resource.type == \"storage.googleapis.com/Bucket\"",
    "resource.name.startsWith(\"projects/_/buckets/${local.state_bucket_name}/objects/${local.state_prefix}failed/\")",
  ])

  function_store_roles = {
    on_flush = google_project_iam_custom_role.dicom_importer.name # dicomStores.import only (hardening.tf)
    # QIDO-RS and WADO-RS (dicomWebRead), export; with conflict_policy "replace" also dicomWebDelete (hardening.tf)
    on_operation = google_project_iam_custom_role.dicom_follower.name
  }
  # Route stores in other projects cannot be granted this project's custom roles: the predefined ones.
  function_store_roles_elsewhere = {
    on_flush     = "roles/healthcare.dicomEditor"
    on_operation = var.settings.conflict_policy == "replace" ? "roles/healthcare.dicomEditor" : "roles/healthcare.dicomViewer"
  }
  function_dataset_roles = {
    on_operation = "roles/healthcare.datasetViewer" # operations.get (flush counts imports in flight from its own ledger)
  }

  healthcare_agent_bucket_grants = merge(
    # Sources and staged copies (imports), the state bucket (filter files of exports and de-identify) and
    # the bucket of research.config_uri (gcsConfigUri, research.tf).
    { for b in distinct(concat(local.source_bucket_names, [local.state_bucket_name], local.research_config_buckets)) : "${b} viewer" => { bucket = b, role = "roles/storage.objectViewer" } },
    { for b in local.export_gcs_buckets : "${b} admin" => { bucket = b, role = "roles/storage.objectAdmin" } },
  )
}

# ---------------------------------------------------------------------------------------------
# Service accounts: one per function, one for the triggers that invoke them
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.function_ids

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.value}"
  display_name = "dicomflow ${each.key}"
  description  = "Runtime identity of the ${each.key} function (dicomflow)."

  depends_on = [google_project_service.main]
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-invoker"
  display_name = "dicomflow invoker"
  description  = "Identity of the Eventarc triggers and of the Pub/Sub push subscription that invoke the dicomflow functions."

  depends_on = [google_project_service.main]
}

# Google-managed service agents.
resource "google_project_service_identity" "healthcare" {
  provider = google-beta

  project = var.project_id
  service = "healthcare.googleapis.com"

  depends_on = [google_project_service.main]
}

resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.main]
}

data "google_storage_project_service_account" "main" {
  project = var.project_id

  depends_on = [google_project_service.main]
}

# ---------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "function" {
  for_each = local.function_bucket_grants

  bucket = each.value.bucket
  role   = each.value.role
  member = "serviceAccount:${google_service_account.function[each.value.function].email}"

  depends_on = [google_storage_bucket.main]
}

# Intake writes failure notes only: objectUser limited by an IAM condition (the bucket needs uniform
# bucket-level access, which created buckets have and reused ones are checked for, hardening.tf).
resource "google_storage_bucket_iam_member" "intake_state" {
  bucket = local.state_bucket_name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.function["on_object_finalized"].email}"

  condition {
    title       = "dicomflow failure notes"
    description = "The state bucket itself (list) and the failure notes under ${local.state_prefix}failed/."
    expression  = local.intake_state_condition
  }

  depends_on = [google_storage_bucket.main]
}

resource "google_pubsub_topic_iam_member" "function" {
  for_each = local.function_topic_grants

  project = var.project_id
  topic   = google_pubsub_topic.main[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

resource "google_pubsub_subscription_iam_member" "flush_pending" {
  project      = var.project_id
  subscription = google_pubsub_subscription.pending.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.function["on_flush"].email}"
}

resource "google_healthcare_dicom_store_iam_member" "function" {
  for_each = local.function_store_roles

  dicom_store_id = google_healthcare_dicom_store.main.id
  role           = each.value
  member         = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_healthcare_dataset_iam_member" "function" {
  for_each = local.function_dataset_roles

  dataset_id = google_healthcare_dataset.main.id
  role       = each.value
  member     = "serviceAccount:${google_service_account.function[each.key].email}"
}

# ---------------------------------------------------------------------------------------------
# Invoker: Eventarc triggers and the push subscription
# ---------------------------------------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.function_ids

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main[each.key].name # a gen2 function's Cloud Run service has its name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# Project level: Cloud Logging's entries.list with resourceNames = projects/P needs logging.logEntries.list
# on the project (a log view grant would need queries by view). Route stores in other projects log their
# imports there: the predefined role, since this project's custom role cannot be granted elsewhere.
resource "google_project_iam_member" "follower_log_reader" {
  for_each = merge(
    { (var.project_id) = google_project_iam_custom_role.log_reader.name },
    { for p in local.route_projects : p => "roles/logging.viewer" },
  )

  project = each.key
  role    = each.value
  member  = "serviceAccount:${google_service_account.function["on_operation"].email}"
}

# Project level only: Eventarc has no resource-level IAM for receiving events.
resource "google_project_iam_member" "invoker_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.invoker.email}"
}

# ---------------------------------------------------------------------------------------------
# Service agents
# ---------------------------------------------------------------------------------------------

# Eventarc Cloud Storage triggers publish through a Pub/Sub topic that Eventarc creates: the Cloud
# Storage service agent needs publisher on the project (the topic does not exist beforehand, and Pub/Sub
# does not evaluate IAM conditions on resource names). intake_events = "notifications" avoids it: the
# buckets notify the module's uploads topic, and the agent may publish to that topic only.
resource "google_project_iam_member" "gcs_agent_publisher" {
  count = local.intake_via_notifications ? 0 : 1

  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.main.email_address}"
}

resource "google_pubsub_topic_iam_member" "gcs_agent_uploads" {
  count = local.intake_via_notifications ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.uploads[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.main.email_address}"
}

# Dead-lettering: the Pub/Sub service agent publishes to the dead-letter topic and acknowledges the
# forwarded message on the source subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  project = var.project_id
  topic   = google_pubsub_topic.main["dead_letter"].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

# The same for the pending subscription when it has a Pub/Sub dead-letter policy
# (pending_subscription.max_delivery_attempts; on_flush dead-letters poison itself either way).
resource "google_pubsub_topic_iam_member" "pubsub_agent_pending_dead_letter" {
  count = var.pending_subscription.max_delivery_attempts == null ? 0 : 1

  project = var.project_id
  topic   = google_pubsub_topic.main["pending_dead_letter"].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_pending" {
  count = var.pending_subscription.max_delivery_attempts == null ? 0 : 1

  project      = var.project_id
  subscription = google_pubsub_subscription.pending.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_operations" {
  project      = var.project_id
  subscription = google_pubsub_subscription.operations.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

# Authenticated push: the Pub/Sub service agent mints the OIDC token of the invoker (needed in
# projects created before April 2021; granted on that one service account, not on the project).
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

# The Healthcare service agent reads what is imported and the export filter files, and writes exports.
resource "google_storage_bucket_iam_member" "healthcare_agent" {
  for_each = local.healthcare_agent_bucket_grants

  bucket = each.value.bucket
  role   = each.value.role
  member = "serviceAccount:${google_project_service_identity.healthcare.email}"

  depends_on = [google_storage_bucket.main]
}

resource "google_pubsub_topic_iam_member" "healthcare_agent_notifications" {
  count = var.store_notifications.enabled ? 1 : 0

  # A full topic name (the created topic's id, or a reused topic's name) carries its project.
  topic  = local.store_notification_topic_id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_project_service_identity.healthcare.email}"

  depends_on = [google_pubsub_topic.store_notifications]
}

# BigQuery export targets and stream configs: dataEditor on each target dataset, jobUser on each target's project
# (BigQuery jobs are project-level; there is no narrower place to grant it).
resource "google_bigquery_dataset_iam_member" "healthcare_agent" {
  for_each = local.export_bigquery_datasets

  project    = each.value.project
  dataset_id = each.value.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_project_service_identity.healthcare.email}"
}

resource "google_project_iam_member" "healthcare_agent_bigquery_job_user" {
  for_each = toset([for d in values(local.export_bigquery_datasets) : d.project])

  project = each.value
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_project_service_identity.healthcare.email}"
}

# The object-name hash key (LOG_HASH_KEY), read by every function at start (the backfill job's grant is
# in backfill.tf).
resource "google_secret_manager_secret_iam_member" "log_hash_key" {
  for_each = var.log_hash_key_secret == null ? {} : local.function_ids

  project   = var.project_id
  secret_id = var.log_hash_key_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"
}

# ---------------------------------------------------------------------------------------------
# Routes (settings.routes): the same roles on every route's store and dataset
# ---------------------------------------------------------------------------------------------

resource "google_healthcare_dicom_store_iam_member" "route" {
  for_each = { for pair in setproduct(tolist(local.route_stores), keys(local.function_store_roles)) : "${pair[1]} ${pair[0]}" => {
    store = pair[0], function = pair[1]
  } }

  dicom_store_id = each.value.store
  # The custom role exists in var.project_id only; elsewhere the predefined role that holds the permission.
  role = (split("/", each.value.store)[1] == var.project_id
  ? local.function_store_roles[each.value.function] : local.function_store_roles_elsewhere[each.value.function])
  member = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

resource "google_healthcare_dataset_iam_member" "route" {
  for_each = { for pair in setproduct(tolist(local.route_datasets), keys(local.function_dataset_roles)) : "${pair[1]} ${pair[0]}" => {
    dataset = pair[0], function = pair[1]
  } }

  dataset_id = each.value.dataset
  role       = local.function_dataset_roles[each.value.function]
  member     = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# A route store in another project imports with that project's Healthcare service agent.
data "google_project" "route" {
  for_each = local.route_projects

  project_id = each.value
}

resource "google_storage_bucket_iam_member" "route_healthcare_agent" {
  for_each = merge(
    { for pair in setproduct(tolist(local.route_projects), distinct(concat(local.source_bucket_names, [local.state_bucket_name]))) :
    "${pair[0]} ${pair[1]} viewer" => { project = pair[0], bucket = pair[1], role = "roles/storage.objectViewer" } },
    { for item in local.route_export_buckets_elsewhere :
    "${item.project} ${item.bucket} admin" => { project = item.project, bucket = item.bucket, role = "roles/storage.objectAdmin" } },
  )

  bucket = each.value.bucket
  role   = each.value.role
  member = "serviceAccount:service-${data.google_project.route[each.value.project].number}@gcp-sa-healthcare.iam.gserviceaccount.com"

  depends_on = [google_storage_bucket.main]
}
