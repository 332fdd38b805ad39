# dicomflow on Google Cloud: buckets, the Healthcare dataset and DICOM store, Pub/Sub topics and
# subscriptions, the three Cloud Functions (gen2) and the scheduler tick. IAM lives in iam.tf.
#
#   upload -> [Eventarc GCS finalize] -> on_object_finalized -> topic pending
#   scheduler -> topic flush_tick -> [Eventarc Pub/Sub] -> on_flush (pulls subscription pending)
#                 -> dicomStores.import -> topic operations
#   topic operations -> [push subscription: retry backoff + dead letter] -> on_operation
#                 -> topics pending (re-drive), failed, results, operations (export watches)

locals {
  labels = merge({ app = "dicomflow" }, var.labels)

  # Bucket names must not hold ':' and should not hold '.', which domain-scoped project ids do.
  project_slug            = replace(replace(var.project_id, ":", "-"), ".", "-")
  healthcare_location     = coalesce(var.healthcare.location, var.region)
  default_bucket_location = upper(var.region)
  state_prefix            = endswith(var.settings.state_prefix, "/") ? var.settings.state_prefix : "${var.settings.state_prefix}/"

  # ---- buckets --------------------------------------------------------------------------------
  source_bucket_names = [for b in var.source_buckets : b.name]
  source_buckets = {
    for b in var.source_buckets : b.name => {
      create   = b.create
      location = upper(coalesce(b.location, local.default_bucket_location))
    }
  }
  primary_source_bucket = var.source_buckets[0].name
  extra_source_buckets  = { for name, b in local.source_buckets : name => b if name != local.primary_source_bucket }

  state_bucket_name       = coalesce(var.state_bucket.name, "${local.project_slug}-${var.name_prefix}-state")
  export_bucket_name      = var.export_bucket.enabled ? coalesce(var.export_bucket.name, "${local.project_slug}-${var.name_prefix}-export") : null
  source_code_bucket_name = "${local.project_slug}-${var.name_prefix}-source"

  # Buckets the module creates, name => location. A state bucket that is also a source bucket is
  # created once (merge keeps one key).
  created_buckets = merge(
    { for name, b in local.source_buckets : name => b.location if b.create },
    var.state_bucket.create ? { (local.state_bucket_name) = upper(coalesce(var.state_bucket.location, local.default_bucket_location)) } : {},
    var.export_bucket.enabled && var.export_bucket.create ? { (local.export_bucket_name) = upper(coalesce(var.export_bucket.location, local.default_bucket_location)) } : {},
    { (local.source_code_bucket_name) = local.default_bucket_location },
  )

  # ---- export targets -------------------------------------------------------------------------
  export_targets = [for t in var.settings.export_targets : { for k, v in t : k => v if v != null }]
  # What the functions read: the configured targets, then the research copy's deidentify target (research.tf).
  function_export_targets = concat(local.export_targets, local.research_targets)
  export_gcs_buckets = distinct(concat(
    local.export_bucket_name == null ? [] : [local.export_bucket_name],
    [for t in var.settings.export_targets : regex("^gs://([^/]+)", t.gcs)[0] if t.gcs != null],
    flatten([for r in local.routes_in_project : [for t in r.export_targets : regex("^gs://([^/]+)", t.gcs)[0] if t.gcs != null]]),
  ))

  # ---- routes (ROUTES): other stores, possibly in other datasets and projects -------------------
  routes = [for r in var.settings.routes : merge(
    { name = r.name, prefix = r.prefix, store = r.store },
    length(r.export_targets) == 0 ? {} : { export_targets = [for t in r.export_targets : { for k, v in t : k => v if v != null }] },
    r.storage_class == null ? {} : { storage_class = r.storage_class },
  )]
  route_stores   = toset([for r in var.settings.routes : r.store])
  route_datasets = toset([for r in var.settings.routes : split("/dicomStores/", r.store)[0]])
  # Routes whose store is in another project: that project's Healthcare service agent reads the imports.
  route_projects    = toset([for r in var.settings.routes : split("/", r.store)[1] if split("/", r.store)[1] != var.project_id])
  routes_in_project = [for r in var.settings.routes : r if split("/", r.store)[1] == var.project_id]
  route_export_buckets_elsewhere = distinct(flatten([
    for r in var.settings.routes : [
      for t in r.export_targets : { project = split("/", r.store)[1], bucket = regex("^gs://([^/]+)", t.gcs)[0] } if t.gcs != null
    ] if split("/", r.store)[1] != var.project_id
  ]))
  # BigQuery tables the Healthcare service agent writes: export targets and the store's stream configs.
  bigquery_table_uris = concat(
    [for t in var.settings.export_targets : t.bigquery if t.bigquery != null],
    [for s in var.store_stream_configs : s.table_uri],
  )
  # bq://project.dataset.table -> "project.dataset" => {project, dataset_id} (the project may hold dots).
  export_bigquery_datasets = {
    for key, items in {
      for uri in local.bigquery_table_uris :
      join(".", slice(regex("^bq://(.+)\\.(\\w+)\\.(\\w+)$", uri), 0, 2)) => {
        project    = regex("^bq://(.+)\\.(\\w+)\\.(\\w+)$", uri)[0]
        dataset_id = regex("^bq://(.+)\\.(\\w+)\\.(\\w+)$", uri)[1]
      }...
    } : key => items[0]
  }
  has_bigquery_targets = length(local.export_bigquery_datasets) > 0

  # ---- Pub/Sub --------------------------------------------------------------------------------
  # intake_events = "notifications": every source bucket notifies this topic (the Cloud Storage service
  # agent publishes to it alone) and an Eventarc Pub/Sub trigger on it invokes on_object_finalized.
  intake_via_notifications = var.intake_events == "notifications"
  uploads_topic            = "${var.name_prefix}-uploads"
  topics = {
    pending     = var.settings.pending_topic
    operations  = var.settings.operations_topic
    failed      = var.settings.failed_topic
    results     = var.settings.results_topic
    dead_letter = "${var.name_prefix}-operations-dead-letter"
    flush_tick  = "${var.name_prefix}-flush-tick"
    # on_flush publishes here what it can never process from the pending subscription, with the reason
    # (dicomflow.config.settings: {PENDING_TOPIC}-dead-letter).
    pending_dead_letter = "${var.settings.pending_topic}-dead-letter"
  }
  # Pull subscriptions that keep what nobody else reads yet (7 days), for people and alerting.
  inspection_subscriptions = var.inspection_subscriptions ? {
    results             = "${var.settings.results_topic}-inspect"
    failed              = "${var.settings.failed_topic}-inspect"
    dead_letter         = local.dead_letter_inspect_subscription
    pending_dead_letter = "${var.settings.pending_topic}-dead-letter-inspect"
  } : {}
  dead_letter_inspect_subscription = "${var.name_prefix}-operations-dead-letter-inspect"

  # The DICOM store's notification topic: a topic id is created in the project, a full name
  # (projects/P/topics/T) is an existing topic that is only granted to the Healthcare service agent.
  store_notification_topic_reused = startswith(var.store_notifications.topic, "projects/")
  store_notification_topic_create = var.store_notifications.enabled && !local.store_notification_topic_reused
  store_notification_topic_id = !var.store_notifications.enabled ? null : (
    local.store_notification_topic_reused ? var.store_notifications.topic : "projects/${var.project_id}/topics/${var.store_notifications.topic}"
  )
  operations_subscription = "${var.settings.operations_topic}-${var.name_prefix}-follow"

  # ---- APIs -----------------------------------------------------------------------------------
  services = toset(concat(
    [
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudfunctions.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "cloudscheduler.googleapis.com",
      "eventarc.googleapis.com",
      "healthcare.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "pubsub.googleapis.com",
      "run.googleapis.com",
      "storage.googleapis.com",
    ],
    local.has_bigquery_targets ? ["bigquery.googleapis.com"] : [],
    var.monitoring.enabled ? ["monitoring.googleapis.com"] : [],
    var.log_hash_key_secret == null ? [] : ["secretmanager.googleapis.com"],
  ))

  # ---- functions ------------------------------------------------------------------------------
  # Entry point (main.py) => short id used in service account ids.
  function_ids = {
    on_object_finalized = "intake"
    on_flush            = "flush"
    on_operation        = "operation"
  }

  # Every function reads the same settings (dicomflow.config.settings.SETTINGS_TABLE); values are strings.
  function_env = {
    PROJECT_ID                = var.project_id
    LOCATION                  = local.healthcare_location
    DATASET                   = google_healthcare_dataset.main.name
    DICOM_STORE               = google_healthcare_dicom_store.main.name
    SOURCE_BUCKETS            = join(",", local.source_bucket_names)
    STATE_BUCKET              = local.state_bucket_name
    STATE_PREFIX              = local.state_prefix
    DICOM_SUFFIXES            = join(",", var.settings.dicom_suffixes)
    SNIFF_EXTENSIONLESS       = tostring(var.settings.sniff_extensionless)
    EXCLUDE_PREFIXES          = join(",", var.settings.exclude_prefixes)
    READY_MARKER              = var.settings.ready_marker
    PENDING_TOPIC             = google_pubsub_topic.main["pending"].name
    PENDING_SUBSCRIPTION      = google_pubsub_subscription.pending.name
    OPERATIONS_TOPIC          = google_pubsub_topic.main["operations"].name
    FAILED_TOPIC              = google_pubsub_topic.main["failed"].name
    RESULTS_TOPIC             = google_pubsub_topic.main["results"].name
    SETTLE_SECONDS            = tostring(var.settings.settle_seconds)
    MAX_WAIT_SECONDS          = tostring(var.settings.max_wait_seconds)
    MAX_BATCH_FILES           = tostring(var.settings.max_batch_files)
    MAX_CONCURRENT_OPERATIONS = tostring(var.settings.max_concurrent_operations)
    BLOB_STORAGE_CLASS        = upper(var.settings.blob_storage_class)
    STAGING                   = var.settings.staging
    HEADER_READ_BYTES         = tostring(var.settings.header_read_bytes)
    MAX_HEADER_BYTES          = tostring(var.settings.max_header_bytes)
    LISTING_CAP               = tostring(var.settings.listing_cap)
    FLUSH_LEASE_SECONDS       = tostring(var.settings.flush_lease_seconds)
    FLUSH_RUN_SECONDS         = tostring(var.settings.flush_run_seconds)
    HEALTHCARE_API_ENDPOINT   = var.settings.healthcare_api_endpoint
    LOGGING_API_ENDPOINT      = var.settings.logging_api_endpoint
    API_RETRY_ATTEMPTS        = tostring(var.settings.api_retry_attempts)
    EXPORT_TARGETS            = length(local.function_export_targets) == 0 ? "" : jsonencode(local.function_export_targets)
    ROUTES                    = length(local.routes) == 0 ? "" : jsonencode(local.routes)
    MAX_ATTEMPTS              = tostring(var.settings.max_attempts)
    CONFLICT_POLICY           = var.settings.conflict_policy
    OPERATION_MAX_AGE_SECONDS = tostring(var.settings.operation_max_age_seconds)
    FOLLOW_POLL_SECONDS       = tostring(var.settings.follow_poll_seconds)
    FOLLOW_INTERVAL_SECONDS   = tostring(var.settings.follow_interval_seconds)
    FAILURE_LOG_WAIT_SECONDS  = tostring(var.settings.failure_log_wait_seconds)
    LOG_LEVEL                 = upper(var.settings.log_level)
    LOG_OBJECT_NAMES          = var.settings.log_object_names
    # LOG_HASH_KEY comes from Secret Manager (secret_environment_variables below), never from plain config.
  }

  # The Python runtime serves each function with functions-framework under gunicorn, which reads WORKERS
  # and THREADS: one thread per request the instance accepts (see var.functions).
  server_env = {
    for name, f in var.functions : name => {
      WORKERS = tostring(f.workers)
      THREADS = tostring(ceil(f.max_instance_request_concurrency / f.workers))
    }
  }

  no_trigger = { event_type = null, bucket = null, pubsub_topic = null, region = null, retry_policy = null }
  functions = {
    on_object_finalized = merge(var.functions.on_object_finalized, {
      description = "dicomflow intake: sniffs each uploaded object's DICOM header and queues it on ${var.settings.pending_topic}."
      # Transient failures raise and the event is redelivered; malformed events are acknowledged.
      trigger = local.intake_via_notifications ? {
        event_type   = "google.cloud.pubsub.topic.v1.messagePublished"
        bucket       = null
        pubsub_topic = "projects/${var.project_id}/topics/${local.uploads_topic}" # google_pubsub_topic.uploads
        region       = var.region
        retry_policy = "RETRY_POLICY_RETRY"
        } : {
        event_type   = "google.cloud.storage.object.v1.finalized"
        bucket       = local.primary_source_bucket
        pubsub_topic = null
        region       = lower(local.source_buckets[local.primary_source_bucket].location)
        retry_policy = "RETRY_POLICY_RETRY"
      }
    })
    on_flush = merge(var.functions.on_flush, {
      description = "dicomflow flush: on each scheduler tick, for settings.flush_run_seconds, pulls ${var.settings.pending_subscription}, plans imports and starts them as folders settle."
      # A failed tick is not retried: the next tick (a minute later) does the same work, and the
      # records of a failed flush were given back to the subscription.
      trigger = {
        event_type   = "google.cloud.pubsub.topic.v1.messagePublished"
        bucket       = null
        pubsub_topic = google_pubsub_topic.main["flush_tick"].id
        region       = var.region
        retry_policy = "RETRY_POLICY_DO_NOT_RETRY"
      }
    })
    # Fed by the push subscription google_pubsub_subscription.operations (see terraform/README.md).
    on_operation = merge(var.functions.on_operation, {
      description = "dicomflow follow-up: polls import/export operations, reconciles files, starts exports, publishes results."
      trigger     = local.no_trigger
    })
  }

  # Dev folders never shipped with the functions (glob patterns relative to the repository root).
  # The functions need main.py, requirements.txt (the lock: the buildpack installs it), handlers/ and dicomflow/.
  source_excludes = [
    ".git",
    ".ci",
    ".venv",
    ".tfvenv",
    ".hclvenv",
    ".lockvenv",
    ".tfschema",
    ".hypothesis",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".local",
    "build",
    "bench",
    "devstack",
    "docs",
    "healthcare_emulator",
    "scripts",
    "terraform",
    "tests",
    "**/__pycache__",
    "**/*.pyc",
    ".gitignore",
    "Makefile",
    "README.md",
    "pyproject.toml",
    "requirements.in",
    "requirements-dev.txt",
    "requirements-dev.lock",
    "requirements-emulator.txt",
    "*.egg-info",
    "Dockerfile",
  ]
}

# ---------------------------------------------------------------------------------------------
# APIs
# ---------------------------------------------------------------------------------------------

resource "google_project_service" "main" {
  for_each = var.enable_apis ? local.services : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------------

resource "google_storage_bucket" "main" {
  #checkov:skip=CKV_GCP_62:Object access is audited with Cloud Audit Logs (Data Access logs for storage.googleapis.com); legacy usage-log buckets add a second copy of object names to manage.
  for_each = local.created_buckets

  project                     = var.project_id
  name                        = each.key
  location                    = each.value
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = local.labels

  versioning {
    enabled = true
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  # Staged copies are deleted once their import is reconciled; this rule is the backstop for a flush
  # that died between copying and importing.
  dynamic "lifecycle_rule" {
    for_each = each.key == local.state_bucket_name ? [var.state_bucket.staging_retention_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = ["${local.state_prefix}staging/"]
      }
      action {
        type = "Delete"
      }
    }
  }

  # The pipeline's own objects (manifests, state, filter files) in the state bucket expire.
  dynamic "lifecycle_rule" {
    for_each = each.key == local.state_bucket_name && var.state_bucket.object_retention_days > 0 ? [var.state_bucket.object_retention_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [local.state_prefix]
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

# ---------------------------------------------------------------------------------------------
# Cloud Healthcare API
# ---------------------------------------------------------------------------------------------

resource "google_healthcare_dataset" "main" {
  project   = var.project_id
  name      = var.healthcare.dataset
  location  = local.healthcare_location
  time_zone = var.healthcare.time_zone

  # CMEK is chosen when the dataset is created: changing kms_key_name later replaces the dataset (and
  # deletes its stores); see var.kms_key_name.
  dynamic "encryption_spec" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_spec.value
    }
  }

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

# google-beta: stream_configs exists only there (google 8.7 has notification_config alone). For a store
# first applied with the google provider only the provider recorded in the state changes (same resource
# type and schema); the plan must show no replacement.
resource "google_healthcare_dicom_store" "main" {
  provider = google-beta

  name    = var.healthcare.dicom_store
  dataset = google_healthcare_dataset.main.id
  labels  = local.labels

  dynamic "notification_config" {
    for_each = var.store_notifications.enabled ? [local.store_notification_topic_id] : []
    content {
      pubsub_topic         = notification_config.value
      send_for_bulk_import = var.store_notifications.send_for_bulk_import
    }
  }

  # Each instance stored (imports included) is streamed to these BigQuery tables.
  dynamic "stream_configs" {
    for_each = var.store_stream_configs
    content {
      bigquery_destination {
        table_uri = stream_configs.value.table_uri
      }
    }
  }

  depends_on = [
    google_pubsub_topic.store_notifications,
    google_pubsub_topic_iam_member.healthcare_agent_notifications,
    google_bigquery_dataset_iam_member.healthcare_agent,
    google_project_iam_member.healthcare_agent_bigquery_job_user,
  ]
}

# ---------------------------------------------------------------------------------------------
# Pub/Sub
# ---------------------------------------------------------------------------------------------

resource "google_pubsub_topic" "main" {
  #checkov:skip=CKV_GCP_83:CMEK is optional (var.kms_key_name, default null: Google-managed encryption at rest); checkov reads the null default. Messages carry object paths, DICOM UIDs and counts, never tag values.
  for_each = local.topics

  project      = var.project_id
  name         = each.value
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

# intake_events = "notifications": the source buckets' finalize notifications (main.tf, below).
resource "google_pubsub_topic" "uploads" {
  #checkov:skip=CKV_GCP_83:CMEK is optional (var.kms_key_name, default null: Google-managed encryption at rest); notifications carry object names and metadata, never tag values.
  count = local.intake_via_notifications ? 1 : 0

  project      = var.project_id
  name         = local.uploads_topic
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "store_notifications" {
  #checkov:skip=CKV_GCP_83:CMEK is optional (var.kms_key_name, default null: Google-managed encryption at rest); notifications carry instance resource names only.
  count = local.store_notification_topic_create ? 1 : 0

  project      = var.project_id
  name         = var.store_notifications.topic
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

# What on_flush pulls: long ack deadline (the flush also extends its leases) and long retention.
# Poison messages are dead-lettered by on_flush itself, with their reason, on the pending dead-letter
# topic. No Pub/Sub dead-letter policy by default: records of folders that have not settled, or wait
# for import capacity, are handed back (nacked) on purpose, tick after tick, and must not be
# dead-lettered for it; pending_subscription.max_delivery_attempts adds one as a backstop.
resource "google_pubsub_subscription" "pending" {
  project                    = var.project_id
  name                       = var.settings.pending_subscription
  topic                      = google_pubsub_topic.main["pending"].id
  ack_deadline_seconds       = var.pending_subscription.ack_deadline_seconds
  message_retention_duration = "${var.pending_subscription.message_retention_seconds}s"
  retain_acked_messages      = false
  labels                     = local.labels

  expiration_policy {
    ttl = "" # never expires, even when no flush ran for 31 days
  }

  dynamic "dead_letter_policy" {
    for_each = var.pending_subscription.max_delivery_attempts == null ? [] : [var.pending_subscription.max_delivery_attempts]
    content {
      dead_letter_topic     = google_pubsub_topic.main["pending_dead_letter"].id
      max_delivery_attempts = dead_letter_policy.value
    }
  }

  depends_on = [google_pubsub_topic_iam_member.pubsub_agent_pending_dead_letter]
}

# Delivery of watch messages to on_operation: a push subscription with an OIDC token to the
# function's Cloud Run URL, so that both the retry backoff and the dead-letter policy are ours.
resource "google_pubsub_subscription" "operations" {
  project                    = var.project_id
  name                       = local.operations_subscription
  topic                      = google_pubsub_topic.main["operations"].id
  ack_deadline_seconds       = 600 # the push request timeout; on_operation's timeout is at most this
  message_retention_duration = "604800s"
  labels                     = local.labels

  push_config {
    push_endpoint = google_cloudfunctions2_function.main["on_operation"].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.main["on_operation"].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.operations_delivery.minimum_backoff_seconds}s"
    maximum_backoff = "${var.operations_delivery.maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.main["dead_letter"].id
    max_delivery_attempts = var.operations_delivery.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  lifecycle {
    precondition {
      condition     = var.operations_delivery.max_delivery_attempts * (var.operations_delivery.maximum_backoff_seconds + var.settings.follow_poll_seconds) >= var.settings.operation_max_age_seconds
      error_message = "The operations_delivery.max_delivery_attempts x (maximum_backoff_seconds + settings.follow_poll_seconds) must cover settings.operation_max_age_seconds, or running operations are dead-lettered before the pipeline reports them stuck."
    }
  }

  depends_on = [
    google_pubsub_topic_iam_member.pubsub_agent_dead_letter,
    google_cloud_run_v2_service_iam_member.invoker,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

resource "google_pubsub_subscription" "inspect" {
  for_each = local.inspection_subscriptions

  project                    = var.project_id
  name                       = each.value
  topic                      = google_pubsub_topic.main[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}

# ---------------------------------------------------------------------------------------------
# Function source: the repository root zipped without dev folders, named by its hash
# ---------------------------------------------------------------------------------------------

data "archive_file" "source" {
  type        = "zip"
  source_dir  = abspath("${path.module}/..")
  output_path = "${path.module}/.build/dicomflow-source.zip"
  excludes    = local.source_excludes
}

resource "google_storage_bucket_object" "source" {
  name         = "source-${data.archive_file.source.output_md5}.zip"
  bucket       = google_storage_bucket.main[local.source_code_bucket_name].name
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}

# ---------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "main" {
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = each.key
    service_account = var.build_service_account_email == null ? null : "projects/${var.project_id}/serviceAccounts/${var.build_service_account_email}"
    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.available_memory
    available_cpu                    = each.value.available_cpu
    timeout_seconds                  = each.value.timeout_seconds
    min_instance_count               = each.value.min_instance_count
    max_instance_count               = each.value.max_instance_count
    max_instance_request_concurrency = each.value.max_instance_request_concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY" # Eventarc and Pub/Sub push of this project are internal
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = merge(local.function_env, local.server_env[each.key])

    dynamic "secret_environment_variables" {
      for_each = var.log_hash_key_secret == null ? [] : [var.log_hash_key_secret]
      content {
        key        = "LOG_HASH_KEY"
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger.event_type == null ? [] : [each.value.trigger]
    content {
      event_type            = event_trigger.value.event_type
      trigger_region        = event_trigger.value.region
      pubsub_topic          = event_trigger.value.pubsub_topic
      retry_policy          = event_trigger.value.retry_policy
      service_account_email = google_service_account.invoker.email

      dynamic "event_filters" {
        for_each = event_trigger.value.bucket == null ? [] : [event_trigger.value.bucket]
        content {
          attribute = "bucket"
          value     = event_filters.value
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition = alltrue([
        for t in var.settings.export_targets : t.gcs == null ? true : !(
          contains(local.source_bucket_names, regex("^gs://([^/]+)", t.gcs)[0])
          && trim(replace(t.gcs, "/^gs://[^/]+/", ""), "/") == ""
        )
      ])
      error_message = "An export target writes to the root of a source bucket: give it a prefix so that exports are not taken for uploads."
    }
    precondition {
      condition     = var.settings.log_object_names != "hashed" || var.log_hash_key_secret != null
      error_message = "settings.log_object_names = \"hashed\" needs log_hash_key_secret (the functions refuse to start without LOG_HASH_KEY)."
    }
    precondition {
      condition     = var.settings.flush_run_seconds + 60 <= var.functions.on_flush.timeout_seconds
      error_message = "settings.flush_run_seconds must be at least 60 s below functions.on_flush.timeout_seconds: the last pass of a flush run must end before the function times out."
    }
    precondition {
      condition     = var.settings.follow_poll_seconds + var.settings.failure_log_wait_seconds + 60 <= var.functions.on_operation.timeout_seconds
      error_message = "settings.follow_poll_seconds + settings.failure_log_wait_seconds must be at least 60 s below functions.on_operation.timeout_seconds: an operation noticed at the end of the poll window is still reconciled (waiting for its failures' log entries at most failure_log_wait_seconds) before the function times out."
    }
  }

  depends_on = [
    google_project_service.main,
    google_project_iam_member.gcs_agent_publisher,
    google_pubsub_topic.uploads,
    google_pubsub_topic_iam_member.gcs_agent_uploads,
    google_project_iam_member.invoker_event_receiver,
    google_storage_bucket_iam_member.function,
    google_storage_bucket_iam_member.intake_state,
    google_pubsub_topic_iam_member.function,
    google_pubsub_subscription_iam_member.flush_pending,
    google_healthcare_dicom_store_iam_member.function,
    google_healthcare_dataset_iam_member.function,
    google_healthcare_dicom_store_iam_member.research_deidentify,
    google_healthcare_dicom_store_iam_member.research_write,
    google_secret_manager_secret_iam_member.log_hash_key,
  ]
}

# Further source buckets: one Eventarc trigger each, to the same on_object_finalized service.
resource "google_eventarc_trigger" "extra_source" {
  for_each = local.intake_via_notifications ? {} : local.extra_source_buckets

  project         = var.project_id
  name            = "${var.name_prefix}-intake-${substr(sha1(each.key), 0, 8)}"
  location        = lower(each.value.location)
  service_account = google_service_account.invoker.email
  labels          = local.labels

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }
  matching_criteria {
    attribute = "bucket"
    value     = each.key
  }

  destination {
    cloud_run_service {
      service = google_cloudfunctions2_function.main["on_object_finalized"].name
      region  = var.region
    }
  }

  depends_on = [google_storage_bucket.main, google_cloud_run_v2_service_iam_member.invoker]
}

# intake_events = "notifications": each source bucket sends its finalize events to the uploads topic
# (JSON_API_V1: the object resource, which intake parses like Eventarc's).
resource "google_storage_notification" "source" {
  for_each = local.intake_via_notifications ? toset(local.source_bucket_names) : toset([])

  bucket         = each.key
  topic          = google_pubsub_topic.uploads[0].id
  payload_format = "JSON_API_V1"
  event_types    = ["OBJECT_FINALIZE"]

  depends_on = [google_storage_bucket.main, google_pubsub_topic_iam_member.gcs_agent_uploads]
}

# ---------------------------------------------------------------------------------------------
# Scheduler tick
# ---------------------------------------------------------------------------------------------

resource "google_cloud_scheduler_job" "flush" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-flush-tick"
  description = "Triggers on_flush through ${local.topics.flush_tick}."
  schedule    = var.flush_schedule
  time_zone   = var.flush_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.main["flush_tick"].id
    data       = base64encode(jsonencode({ source = "cloud-scheduler", job = "${var.name_prefix}-flush-tick" }))
  }

  depends_on = [google_project_service.main, google_cloudfunctions2_function.main]
}
