# Inputs of the dicomflow deployment. The function settings (`settings`) mirror
# dicomflow/config/settings.py (SETTINGS_TABLE): same names in lower case, same defaults, same ranges;
# tests/terraform checks that they stay in step.

# ---------------------------------------------------------------------------------------------
# Where
# ---------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project that holds everything (PROJECT_ID): the Healthcare dataset, the Pub/Sub topics, the functions and the buckets the module creates."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9\\-:.]{2,62}$", var.project_id))
    error_message = "The project_id must be a project id such as my-project (lowercase letters, digits and '-')."
  }
}

variable "region" {
  description = "Region of the functions, the Cloud Scheduler job and, unless overridden, the Healthcare dataset and the buckets the module creates (e.g. us-central1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "The region must be a Google Cloud region such as us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of the names of functions, service accounts, the scheduler job and the module's own topics (dead-letter, flush tick). Keep it short: service account ids are limited to 30 characters."
  type        = string
  default     = "dicomflow"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 3-16 lowercase letters, digits or '-', start with a letter and not end with '-'."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "enable_apis" {
  description = "Enable the Google APIs the deployment uses (google_project_service, never disabled on destroy). Turn off when a platform team manages project services."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------------

variable "source_buckets" {
  description = <<-EOT
    Buckets whose uploads are imported (SOURCE_BUCKETS). Each entry: `name`; `create` (default true:
    the module creates the bucket; false: an existing bucket is reused and only IAM is added);
    `location` (default: the region, upper case). The first bucket is the function's own Eventarc
    trigger; every further bucket gets a google_eventarc_trigger to the same function. An Eventarc
    trigger lives in the bucket's location, so give `location` for reused buckets outside the region.
  EOT
  type = list(object({
    name     = string
    create   = optional(bool, true)
    location = optional(string)
  }))

  validation {
    condition     = length(var.source_buckets) >= 1
    error_message = "At least one source bucket is required."
  }
  validation {
    condition     = alltrue([for b in var.source_buckets : can(regex("^[a-z0-9][a-z0-9._\\-]{1,220}[a-z0-9]$", b.name))])
    error_message = "Every source bucket name must be a bucket name (lowercase letters, digits, '.', '_' and '-')."
  }
  validation {
    condition     = length(distinct([for b in var.source_buckets : b.name])) == length(var.source_buckets)
    error_message = "Source bucket names must be unique."
  }
}

variable "state_bucket" {
  description = <<-EOT
    Bucket of the batch manifests, state objects and filter files (STATE_BUCKET). `name` defaults to
    PROJECT-NAME_PREFIX-state; `create` false reuses an existing bucket (it may be a source bucket);
    `object_retention_days` deletes the pipeline's objects under STATE_PREFIX that many days after
    they were written (0 keeps them); `staging_retention_days` deletes staged copies under
    STATE_PREFIX/staging/ that many days after they were written, a backstop: the pipeline deletes
    them once their import is reconciled. Created state buckets are versioned. Give the state bucket
    the source buckets' location and storage class: a staged copy is then a metadata operation.
  EOT
  type = object({
    name                   = optional(string)
    create                 = optional(bool, true)
    location               = optional(string)
    object_retention_days  = optional(number, 180)
    staging_retention_days = optional(number, 2)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.state_bucket.name == null ? true : can(regex("^[a-z0-9][a-z0-9._\\-]{1,220}[a-z0-9]$", var.state_bucket.name))
    error_message = "The state bucket name must be a bucket name."
  }
  validation {
    condition     = var.state_bucket.object_retention_days >= 0 && floor(var.state_bucket.object_retention_days) == var.state_bucket.object_retention_days
    error_message = "The state_bucket.object_retention_days must be a whole number of days (0 = keep)."
  }
  validation {
    condition     = var.state_bucket.staging_retention_days >= 1 && floor(var.state_bucket.staging_retention_days) == var.state_bucket.staging_retention_days
    error_message = "The state_bucket.staging_retention_days must be a whole number of days, at least 1."
  }
}

variable "export_bucket" {
  description = <<-EOT
    Bucket for GCS export targets. `enabled` false: no export bucket (import only, or exports to
    buckets you manage); `name` defaults to PROJECT-NAME_PREFIX-export; `create` false reuses an
    existing bucket. The Healthcare service agent gets objectAdmin on it and on every bucket named
    by a `gcs` export target.
  EOT
  type = object({
    enabled  = optional(bool, true)
    name     = optional(string)
    create   = optional(bool, true)
    location = optional(string)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.export_bucket.name == null ? true : can(regex("^[a-z0-9][a-z0-9._\\-]{1,220}[a-z0-9]$", var.export_bucket.name))
    error_message = "The export bucket name must be a bucket name."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days a replaced or deleted object version is kept in the versioned buckets the module creates."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "The noncurrent_version_retention_days must be a whole number of at least 1."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the buckets the module created even when they still hold objects. Keep false in production; set true (and apply) before tearing a test deployment down."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Cloud Healthcare API
# ---------------------------------------------------------------------------------------------

variable "healthcare" {
  description = "Healthcare dataset and DICOM store the module creates: `location` (LOCATION, default the region), `dataset` (DATASET), `dicom_store` (DICOM_STORE), `time_zone` of the dataset."
  type = object({
    location    = optional(string)
    dataset     = optional(string, "dicomflow")
    dicom_store = optional(string, "dicomflow")
    time_zone   = optional(string, "UTC")
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.healthcare.location == null ? true : can(regex("^[a-z0-9\\-]{2,63}$", var.healthcare.location))
    error_message = "The healthcare.location must be a location such as us-central1."
  }
  validation {
    condition     = can(regex("^[A-Za-z0-9_.\\-]{1,256}$", var.healthcare.dataset)) && can(regex("^[A-Za-z0-9_.\\-]{1,256}$", var.healthcare.dicom_store))
    error_message = "The healthcare.dataset and healthcare.dicom_store must be 1-256 letters, digits, '_', '-' or '.'."
  }
}

variable "store_notifications" {
  description = "Optional DICOM store notification config (one Pub/Sub message per stored instance): when `enabled`, the store publishes to `topic`, a topic id the module creates in the project or the full name of an existing topic (projects/PROJECT/topics/TOPIC) it reuses; either way the Healthcare service agent may publish to it. `send_for_bulk_import`: also notify for instances that arrive by import (the pipeline's way). Subscribe to it yourself."
  type = object({
    enabled              = optional(bool, false)
    topic                = optional(string, "dicom-store-notifications")
    send_for_bulk_import = optional(bool, true)
  })
  default  = {}
  nullable = false

  validation {
    condition     = can(regex("^(projects/[a-z][a-z0-9\\-:.]{2,62}/topics/)?[A-Za-z][A-Za-z0-9\\-_.~+%]{2,254}$", var.store_notifications.topic))
    error_message = "The store_notifications.topic must be a Pub/Sub topic id (3-255 characters, starting with a letter) or a full topic name projects/PROJECT/topics/TOPIC."
  }
}

variable "store_stream_configs" {
  description = "Optional BigQuery streaming of the DICOM store: every instance stored (imports included) is written as a row of each `table_uri` (bq://project.dataset.table; the dataset must exist, the table is created). The Healthcare service agent gets roles/bigquery.dataEditor on each dataset and roles/bigquery.jobUser on its project. The store is managed by the google-beta provider, where stream_configs lives."
  type = list(object({
    table_uri = string
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for s in var.store_stream_configs : can(regex("^bq://[A-Za-z0-9_:.\\-]+\\.\\w+\\.\\w+$", s.table_uri))])
    error_message = "Each store_stream_configs table_uri must be bq://project.dataset.table."
  }
  validation {
    condition     = length(distinct([for s in var.store_stream_configs : s.table_uri])) == length(var.store_stream_configs)
    error_message = "The store_stream_configs table_uri values must be unique."
  }
}

variable "research" {
  description = <<-EOT
    Optional de-identified research copy (research.tf): after every imported batch of the default route
    the follow-up calls dicomStores.deidentify on the DICOM store with the batch's filter file, writing
    de-identified copies into a research DICOM store (an export target of kind `deidentify`, added to
    EXPORT_TARGETS). `enabled` (default false). The research store is created by the module, in its own
    dataset `dataset_id` ("dicomflow-research") as store `store_id` ("research"), in the location of the
    source dataset, with its own Pub/Sub notification topic `notification_topic`
    ("dicom-research-notifications": one message per stored instance, for the research users' own
    processing; `send_for_bulk_import` true); or `existing_store` names an existing store
    (projects/P/locations/L/datasets/D/dicomStores/S, same project and location as the source store, which
    the API requires; the module then manages neither that store nor a notification). `target_name`
    ("research") is the export target's name in batch results. `config`: the DeidentifyConfig as an object
    (default {dicom = {filterProfile = "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}), or `config_uri`:
    gs://BUCKET/OBJECT of a JSON DeidentifyConfig (gcsConfigUri; the Healthcare service agent gets
    objectViewer on that bucket); at most one of the two. on_operation gets a custom role holding
    healthcare.dicomStores.deidentify on the source store and one holding
    healthcare.dicomStores.dicomWebWrite on the research store, nothing at project level.
  EOT
  type = object({
    enabled              = optional(bool, false)
    dataset_id           = optional(string, "dicomflow-research")
    store_id             = optional(string, "research")
    existing_store       = optional(string)
    target_name          = optional(string, "research")
    config               = optional(any)
    config_uri           = optional(string)
    notification_topic   = optional(string, "dicom-research-notifications")
    send_for_bulk_import = optional(bool, true)
  })
  default  = {}
  nullable = false

  validation {
    condition     = can(regex("^[A-Za-z0-9_.\\-]{1,256}$", var.research.dataset_id)) && can(regex("^[A-Za-z0-9_.\\-]{1,256}$", var.research.store_id))
    error_message = "The research.dataset_id and research.store_id must be 1-256 letters, digits, '_', '-' or '.'."
  }
  validation {
    condition     = var.research.existing_store == null ? true : can(regex("^projects/[^/]+/locations/[^/]+/datasets/[^/]+/dicomStores/[^/]+$", var.research.existing_store))
    error_message = "The research.existing_store must be a full DICOM store name: projects/P/locations/L/datasets/D/dicomStores/S."
  }
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.research.target_name))
    error_message = "The research.target_name must be 1-40 lowercase letters, digits or '-', starting with a letter (an export target name)."
  }
  validation {
    condition     = var.research.config == null || var.research.config_uri == null
    error_message = "Give research.config (a DeidentifyConfig object) or research.config_uri (gs://BUCKET/OBJECT), not both: dicomStores.deidentify takes only one of config and gcsConfigUri."
  }
  validation {
    condition     = var.research.config == null ? true : try(length(keys(var.research.config)) > 0, false)
    error_message = "The research.config must be a non-empty DeidentifyConfig object, e.g. { dicom = { filterProfile = \"ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE\" } }."
  }
  validation {
    condition = try(var.research.config.dicom.filterProfile, null) == null ? true : contains(
      ["MINIMAL_KEEP_LIST_PROFILE", "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE", "KEEP_ALL_PROFILE", "DEIDENTIFY_TAG_CONTENTS"],
      try(tostring(var.research.config.dicom.filterProfile), "")
    )
    error_message = "The research.config.dicom.filterProfile must be MINIMAL_KEEP_LIST_PROFILE, ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE, KEEP_ALL_PROFILE or DEIDENTIFY_TAG_CONTENTS."
  }
  validation {
    condition     = var.research.config_uri == null ? true : can(regex("^gs://[a-z0-9][a-z0-9._\\-]{1,220}[a-z0-9]/[^*?\\[\\]]*[^/*?\\[\\]]$", var.research.config_uri))
    error_message = "The research.config_uri must name one object, gs://BUCKET/OBJECT (no wildcard, not ending with '/')."
  }
  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9\\-_.~+%]{2,254}$", var.research.notification_topic)) && !startswith(lower(var.research.notification_topic), "goog")
    error_message = "The research.notification_topic must be a Pub/Sub topic id: 3-255 characters, starting with a letter, not with 'goog'."
  }
}

# ---------------------------------------------------------------------------------------------
# Function settings (environment variables)
# ---------------------------------------------------------------------------------------------

variable "settings" {
  description = <<-EOT
    Settings passed to every function as environment variables (the required ones, PROJECT_ID,
    LOCATION, DATASET, DICOM_STORE, SOURCE_BUCKETS and STATE_BUCKET, come from the variables above).
    Each attribute is the lower-case name of its variable, with the same default:
      state_prefix (STATE_PREFIX, "dicomflow/"): prefix of the pipeline's own objects in the state bucket; never imported.
      dicom_suffixes (DICOM_SUFFIXES, [".dcm"]): name suffixes selected as DICOM (case-insensitive).
      sniff_extensionless (SNIFF_EXTENSIONLESS, true): also select extensionless objects whose bytes 128-131 are 'DICM'
        (DICOM media, many PACS exports); costs one ranged read per extensionless object.
      ready_marker (READY_MARKER, ""): name of an object (e.g. "_READY") whose upload marks its folder complete, so
        the folder is imported at the next flush without waiting settle_seconds; "" is off.
      exclude_prefixes (EXCLUDE_PREFIXES, []): object prefixes never imported (e.g. quarantine/).
      pending_topic, pending_subscription, operations_topic, failed_topic, results_topic
        (PENDING_TOPIC "dicom-pending", PENDING_SUBSCRIPTION "dicom-pending-flush", OPERATIONS_TOPIC
        "dicom-operations", FAILED_TOPIC "dicom-failed", RESULTS_TOPIC "dicom-results"): the module
        creates the topics and subscription under these names.
      settle_seconds (SETTLE_SECONDS, 30): a folder is ready once no new upload arrived in it for this long.
      max_wait_seconds (MAX_WAIT_SECONDS, 600, >= settle_seconds): a folder is ready anyway once its oldest upload waited this long.
      max_batch_files (MAX_BATCH_FILES, 10000, 1..1000000): most pending records one flush imports as one batch.
      max_concurrent_operations (MAX_CONCURRENT_OPERATIONS, 5, 1..100): most import operations in flight on the store.
      blob_storage_class (BLOB_STORAGE_CLASS, ""): STANDARD, NEARLINE, COLDLINE, ARCHIVE or "" for the store's default.
      staging (STAGING, "auto"): auto imports a whole new subtree holding most of a batch in place and copies every
        other file into STATE_PREFIX/staging/ for one more import; always stages every file; never uses in-place covers only.
      header_read_bytes (HEADER_READ_BYTES, 65536, >= 1024): first ranged read when sniffing a header.
      max_header_bytes (MAX_HEADER_BYTES, 16777216, >= header_read_bytes): largest header read before an object is reported as not DICOM.
      listing_cap (LISTING_CAP, 50000, >= 100): most objects one planner step may list.
      flush_lease_seconds (FLUSH_LEASE_SECONDS, 30, 10..600): ack deadline the flush keeps extending on the records it holds;
        a crashed flush's records come back within this long.
      flush_run_seconds (FLUSH_RUN_SECONDS, 55, 0..480): seconds one on_flush invocation keeps working (pull, plan, start,
        pull again as folders settle) before it hands over to the next tick; keep it below the flush_schedule interval
        (55 of 60 s) and at least 60 s below functions.on_flush.timeout_seconds. 0: one pass per tick.
      healthcare_api_endpoint (HEALTHCARE_API_ENDPOINT, ""): API endpoint override, only for the local emulator; leave empty in the cloud.
      logging_api_endpoint (LOGGING_API_ENDPOINT, ""): Cloud Logging endpoint override (where the follow-up reads per-file
        reasons), only for the local emulator; leave empty in the cloud.
      api_retry_attempts (API_RETRY_ATTEMPTS, 6, 1..20): attempts for a Healthcare API call answered 429/5xx or timing out.
      export_targets (EXPORT_TARGETS, []): exports fired for every imported batch; each {name, gcs = "gs://bucket/prefix",
        mime_type} or {name, bigquery = "bq://project.dataset.table", write_disposition}; passed as JSON.
      routes (ROUTES, []): files under a prefix go to another DICOM store; each {name, prefix = "gs://bucket/prefix/"
        (a source bucket), store = "projects/P/locations/L/datasets/D/dicomStores/S", export_targets (as above),
        storage_class}; the longest prefix wins, everything else takes the default route (this module's store).
        The functions get their roles on every route's store and dataset, and each route project's Healthcare
        service agent read access to the source and state buckets. Passed as JSON.
      max_attempts (MAX_ATTEMPTS, 3, 1..100): imports tried per file before it goes to dicom-failed.
      conflict_policy (CONFLICT_POLICY, "report"): what becomes of a file whose UIDs the store holds with other
        content: report puts it on dicom-failed (stage conflict); replace deletes the stored instance through
        DICOMweb and re-drives the file once (on_operation then gets roles/healthcare.dicomEditor on every store
        instead of dicomViewer, for dicomWebDelete).
      operation_max_age_seconds (OPERATION_MAX_AGE_SECONDS, 21600, >= 0): an operation still running after this long is reported stuck.
      follow_poll_seconds (FOLLOW_POLL_SECONDS, 240, 0..540): seconds one on_operation delivery polls a running operation before
        handing the watch back to the retry backoff; at least 60 s below functions.on_operation.timeout_seconds. 0: no polling.
      follow_interval_seconds (FOLLOW_INTERVAL_SECONDS, 2, 0.1..60): seconds between operations.get calls while polling.
      failure_log_wait_seconds (FAILURE_LOG_WAIT_SECONDS, 30, 0..120): seconds a follow-up waits for Cloud Logging to hold
        the per-file errors of an import that failed files before it reports them with the fallback reasons; keep
        follow_poll_seconds + this at least 60 s below functions.on_operation.timeout_seconds.
      log_level (LOG_LEVEL, "INFO"): DEBUG, INFO, WARNING or ERROR.
      log_object_names (LOG_OBJECT_NAMES, "full"): full, or hashed (every object name in a log line is a keyed
        hash; needs log_hash_key_secret).
  EOT
  type = object({
    state_prefix              = optional(string, "dicomflow/")
    dicom_suffixes            = optional(list(string), [".dcm"])
    sniff_extensionless       = optional(bool, true)
    ready_marker              = optional(string, "")
    exclude_prefixes          = optional(list(string), [])
    pending_topic             = optional(string, "dicom-pending")
    pending_subscription      = optional(string, "dicom-pending-flush")
    operations_topic          = optional(string, "dicom-operations")
    failed_topic              = optional(string, "dicom-failed")
    results_topic             = optional(string, "dicom-results")
    settle_seconds            = optional(number, 30)
    max_wait_seconds          = optional(number, 600)
    max_batch_files           = optional(number, 10000)
    max_concurrent_operations = optional(number, 5)
    blob_storage_class        = optional(string, "")
    staging                   = optional(string, "auto")
    header_read_bytes         = optional(number, 65536)
    max_header_bytes          = optional(number, 16777216)
    listing_cap               = optional(number, 50000)
    flush_lease_seconds       = optional(number, 30)
    flush_run_seconds         = optional(number, 55)
    healthcare_api_endpoint   = optional(string, "")
    logging_api_endpoint      = optional(string, "")
    api_retry_attempts        = optional(number, 6)
    export_targets = optional(list(object({
      name              = string
      gcs               = optional(string)
      mime_type         = optional(string)
      bigquery          = optional(string)
      write_disposition = optional(string)
    })), [])
    routes = optional(list(object({
      name   = string
      prefix = string
      store  = string
      export_targets = optional(list(object({
        name              = string
        gcs               = optional(string)
        mime_type         = optional(string)
        bigquery          = optional(string)
        write_disposition = optional(string)
      })), [])
      storage_class = optional(string)
    })), [])
    max_attempts              = optional(number, 3)
    conflict_policy           = optional(string, "report")
    operation_max_age_seconds = optional(number, 21600)
    follow_poll_seconds       = optional(number, 240)
    follow_interval_seconds   = optional(number, 2)
    failure_log_wait_seconds  = optional(number, 30)
    log_level                 = optional(string, "INFO")
    log_object_names          = optional(string, "full")
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.settings.state_prefix != "" && !startswith(var.settings.state_prefix, "/")
    error_message = "The settings.state_prefix must not be empty and must not start with '/'."
  }
  validation {
    condition     = length(var.settings.dicom_suffixes) >= 1 && alltrue([for s in var.settings.dicom_suffixes : trimspace(s) != "" && !strcontains(s, ",")])
    error_message = "The settings.dicom_suffixes must hold at least one suffix, none empty or holding ','."
  }
  validation {
    condition     = alltrue([for p in var.settings.exclude_prefixes : trimspace(p) != "" && !strcontains(p, ",")])
    error_message = "The settings.exclude_prefixes must not be empty strings or hold ','."
  }
  validation {
    condition = alltrue([
      for name in [
        var.settings.pending_topic, var.settings.pending_subscription, var.settings.operations_topic,
        var.settings.failed_topic, var.settings.results_topic,
      ] : can(regex("^[A-Za-z][A-Za-z0-9\\-_.~+%]{2,254}$", name)) && !startswith(lower(name), "goog")
    ])
    error_message = "Topic and subscription names must be Pub/Sub resource ids: 3-255 characters, starting with a letter, not with 'goog'."
  }
  validation {
    condition = length(distinct([
      var.settings.pending_topic, var.settings.operations_topic, var.settings.failed_topic, var.settings.results_topic,
    ])) == 4
    error_message = "The pending, operations, failed and results topics must be four different topics."
  }
  validation {
    condition     = var.settings.settle_seconds >= 0 && var.settings.max_wait_seconds >= var.settings.settle_seconds
    error_message = "The settings.settle_seconds must be at least 0 and settings.max_wait_seconds at least settings.settle_seconds."
  }
  validation {
    condition     = floor(var.settings.max_batch_files) == var.settings.max_batch_files && var.settings.max_batch_files >= 1 && var.settings.max_batch_files <= 1000000
    error_message = "The settings.max_batch_files must be a whole number between 1 and 1000000."
  }
  validation {
    condition     = floor(var.settings.max_concurrent_operations) == var.settings.max_concurrent_operations && var.settings.max_concurrent_operations >= 1 && var.settings.max_concurrent_operations <= 100
    error_message = "The settings.max_concurrent_operations must be a whole number between 1 and 100."
  }
  validation {
    condition     = contains(["", "STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], upper(var.settings.blob_storage_class))
    error_message = "The settings.blob_storage_class must be STANDARD, NEARLINE, COLDLINE, ARCHIVE or empty."
  }
  validation {
    condition     = contains(["auto", "always", "never"], var.settings.staging)
    error_message = "The settings.staging must be auto, always or never."
  }
  validation {
    condition = (
      floor(var.settings.header_read_bytes) == var.settings.header_read_bytes && var.settings.header_read_bytes >= 1024
      && floor(var.settings.max_header_bytes) == var.settings.max_header_bytes && var.settings.max_header_bytes >= var.settings.header_read_bytes
    )
    error_message = "The settings.header_read_bytes must be a whole number of at least 1024 and settings.max_header_bytes at least settings.header_read_bytes."
  }
  validation {
    condition     = floor(var.settings.listing_cap) == var.settings.listing_cap && var.settings.listing_cap >= 100
    error_message = "The settings.listing_cap must be a whole number of at least 100."
  }
  validation {
    condition     = floor(var.settings.flush_lease_seconds) == var.settings.flush_lease_seconds && var.settings.flush_lease_seconds >= 10 && var.settings.flush_lease_seconds <= 600
    error_message = "The settings.flush_lease_seconds must be a whole number between 10 and 600."
  }
  validation {
    condition     = var.settings.flush_run_seconds >= 0 && var.settings.flush_run_seconds <= 480
    error_message = "The settings.flush_run_seconds must be between 0 and 480 (on_flush times out after at most 540 s)."
  }
  validation {
    condition     = var.settings.healthcare_api_endpoint == "" || can(regex("^https?://[^/\\s]+/?$", var.settings.healthcare_api_endpoint))
    error_message = "The settings.healthcare_api_endpoint must be empty (the real API) or a base URL such as http://127.0.0.1:8089."
  }

  validation {
    condition     = var.settings.logging_api_endpoint == "" || can(regex("^https?://[^/\\s]+/?$", var.settings.logging_api_endpoint))
    error_message = "The settings.logging_api_endpoint must be empty (the real API) or a base URL such as http://127.0.0.1:8089."
  }

  validation {
    condition     = var.settings.failure_log_wait_seconds >= 0 && var.settings.failure_log_wait_seconds <= 120
    error_message = "The settings.failure_log_wait_seconds must be between 0 and 120."
  }
  validation {
    condition     = floor(var.settings.api_retry_attempts) == var.settings.api_retry_attempts && var.settings.api_retry_attempts >= 1 && var.settings.api_retry_attempts <= 20
    error_message = "The settings.api_retry_attempts must be a whole number between 1 and 20."
  }
  validation {
    condition     = alltrue([for t in var.settings.export_targets : can(regex("^[a-z][a-z0-9-]{0,39}$", t.name))])
    error_message = "Every export target name must be 1-40 lowercase letters, digits or '-', starting with a letter."
  }
  validation {
    condition     = length(distinct([for t in var.settings.export_targets : t.name])) == length(var.settings.export_targets)
    error_message = "Export target names must be unique."
  }
  validation {
    condition     = alltrue([for t in var.settings.export_targets : (t.gcs == null) != (t.bigquery == null)])
    error_message = "Every export target needs exactly one of gcs (gs://bucket/prefix) or bigquery (bq://project.dataset.table)."
  }
  validation {
    condition     = alltrue([for t in var.settings.export_targets : t.gcs == null ? true : can(regex("^gs://[a-z0-9][a-z0-9._\\-]{1,220}[a-z0-9](/.*)?$", t.gcs))])
    error_message = "An export target's gcs must be gs://bucket[/prefix]."
  }
  validation {
    condition     = alltrue([for t in var.settings.export_targets : t.bigquery == null ? true : can(regex("^bq://[A-Za-z0-9_:.\\-]+\\.\\w+\\.\\w+$", t.bigquery))])
    error_message = "An export target's bigquery must be bq://project.dataset.table."
  }
  validation {
    condition = alltrue([
      for t in var.settings.export_targets : t.mime_type == null ? true : (
        t.gcs != null && contains(
          ["application/dicom", "image/jpeg", "image/png", "application/octet-stream"],
          lower(trimspace(split(";", t.mime_type)[0]))
        )
      )
    ])
    error_message = "An export target's mime_type applies to gcs targets only and must be application/dicom (optionally '; transfer-syntax=UID'), image/jpeg, image/png or application/octet-stream."
  }
  validation {
    condition = alltrue([
      for t in var.settings.export_targets : t.write_disposition == null ? true : (
        t.bigquery != null && contains(["WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND"], t.write_disposition)
      )
    ])
    error_message = "An export target's write_disposition applies to bigquery targets only and must be WRITE_EMPTY, WRITE_TRUNCATE or WRITE_APPEND."
  }
  validation {
    condition     = floor(var.settings.max_attempts) == var.settings.max_attempts && var.settings.max_attempts >= 1 && var.settings.max_attempts <= 100
    error_message = "The settings.max_attempts must be a whole number between 1 and 100."
  }
  validation {
    condition     = var.settings.operation_max_age_seconds >= 0
    error_message = "The settings.operation_max_age_seconds must be at least 0."
  }
  validation {
    condition     = var.settings.follow_poll_seconds >= 0 && var.settings.follow_poll_seconds <= 540 && var.settings.follow_interval_seconds >= 0.1 && var.settings.follow_interval_seconds <= 60
    error_message = "The settings.follow_poll_seconds must be between 0 and 540, settings.follow_interval_seconds between 0.1 and 60."
  }
  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], upper(var.settings.log_level))
    error_message = "The settings.log_level must be DEBUG, INFO, WARNING or ERROR."
  }
  validation {
    condition     = !strcontains(var.settings.ready_marker, "/")
    error_message = "The settings.ready_marker is an object name without '/' (it is matched in every folder)."
  }
  validation {
    condition = alltrue([for r in var.settings.routes : can(regex("^[a-z][a-z0-9-]{0,39}$", r.name)) && r.name != "default"
      && can(regex("^gs://[a-z0-9][a-z0-9._\\-]{1,220}[a-z0-9]/", r.prefix))
    && can(regex("^projects/[^/]+/locations/[^/]+/datasets/[^/]+/dicomStores/[^/]+$", r.store))])
    error_message = "Each of settings.routes needs a name (lowercase, digits, '-', not 'default'), a prefix gs://BUCKET/PREFIX/ and a store projects/P/locations/L/datasets/D/dicomStores/S."
  }
  validation {
    condition     = contains(["report", "replace"], var.settings.conflict_policy)
    error_message = "The settings.conflict_policy must be report or replace."
  }
  validation {
    condition     = contains(["full", "hashed"], var.settings.log_object_names)
    error_message = "The settings.log_object_names must be full or hashed."
  }
}

variable "log_hash_key_secret" {
  description = <<-EOT
    Secret Manager secret id (in var.project_id) whose latest version is LOG_HASH_KEY, the key of the
    object-name hash in logs (settings.log_object_names = "hashed"; at least 16 characters). The functions'
    and the backfill job's service accounts get roles/secretmanager.secretAccessor on that secret only.
    null: no key (full names). Deployments whose object names can hold patient data (folders named after
    the patient) should set it and settings.log_object_names = "hashed".
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.log_hash_key_secret == null ? true : can(regex("^[A-Za-z0-9_-]{1,255}$", var.log_hash_key_secret))
    error_message = "The log_hash_key_secret must be a Secret Manager secret id (letters, digits, '_' and '-')."
  }
}

# ---------------------------------------------------------------------------------------------
# Hardening
# ---------------------------------------------------------------------------------------------

variable "intake_events" {
  description = <<-EOT
    How uploads reach on_object_finalized. "eventarc" (default): Eventarc Cloud Storage triggers, one per
    source bucket; Eventarc creates their topics, so the Cloud Storage service agent gets
    roles/pubsub.publisher on the whole project. "notifications": every source bucket sends Pub/Sub
    notifications (OBJECT_FINALIZE, JSON_API_V1) to the module's topic PREFIX-uploads and one Eventarc
    Pub/Sub trigger on it invokes the function; the agent may publish to that topic only (the narrower
    grant, recommended for new deployments). Switching replaces the intake trigger: uploads finalized during
    the apply may be missed (run `dicomflow backfill` over them).
  EOT
  type        = string
  default     = "eventarc"
  nullable    = false

  validation {
    condition     = contains(["eventarc", "notifications"], var.intake_events)
    error_message = "The intake_events must be eventarc or notifications."
  }
}

variable "kms_key_name" {
  description = <<-EOT
    Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) that encrypts what the module creates:
    the buckets (default_kms_key_name), the Healthcare dataset (encryption_spec) and the Pub/Sub topics
    (kms_key_name). The Cloud Storage, Healthcare and Pub/Sub service agents get
    roles/cloudkms.cryptoKeyEncrypterDecrypter on that key only. The key's location must hold every
    created resource: the region of the buckets and the dataset (a single-region deployment). The dataset's
    key is fixed at creation: setting or changing it on a deployed dataset REPLACES the dataset and deletes
    its stores. null (default): Google-managed encryption.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null ? true : can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "The kms_key_name must be projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "data_access_audit_logs" {
  description = "Turn on Data Access audit logs (DATA_READ, DATA_WRITE) and ADMIN_READ for healthcare.googleapis.com and storage.googleapis.com in the project (google_project_iam_audit_config, authoritative for those two services' audit config: it replaces audit configs set elsewhere for them). Who read or wrote which instance or object is then in Cloud Audit Logs; the entries name the objects, so restrict who reads the _Default log bucket. false: manage the audit config yourself (at the organisation, for example)."
  type        = bool
  default     = true
  nullable    = false
}

variable "reused_bucket_checks" {
  description = "Fail the plan when a reused bucket (create = false: source, state or export bucket) lacks uniform bucket-level access or has public access prevention other than \"enforced\". The conditional grants of this module (intake's state-bucket access) need uniform access. false: skip the check (not recommended)."
  type        = bool
  default     = true
  nullable    = false
}

# ---------------------------------------------------------------------------------------------
# Functions, triggers and delivery
# ---------------------------------------------------------------------------------------------

# What the sizing relies on: Cloud Functions gen2 concurrency (https://cloud.google.com/functions/docs/configuring/concurrency:
# concurrency above 1 needs at least 1 vCPU; for Python set THREADS equal to the concurrency); the Python
# buildpack starts the `functions-framework` web process (GoogleCloudPlatform/buildpacks,
# cmd/python/functions_framework), which serves through gunicorn with WORKERS (default 1) processes of THREADS
# (default 4 x CPUs) threads (functions-framework-python, src/functions_framework/_http/gunicorn.py, 3.10).
variable "functions" {
  description = <<-EOT
    Sizing of each function (Cloud Functions gen2 service_config): available_memory, available_cpu,
    timeout_seconds, min/max_instance_count, max_instance_request_concurrency, and `workers`, the
    gunicorn worker processes of the Python runtime. The runtime serves a function with
    functions-framework under gunicorn: WORKERS processes (default 1) x THREADS threads (default 4
    per CPU); the module sets WORKERS = workers and THREADS = concurrency / workers, so that every
    request the instance accepts has a thread (Google's concurrency guide: THREADS equal to the
    concurrency). Concurrency above 1 needs at least one vCPU.
    on_object_finalized: 32 requests at once on 1 vCPU. Intake is I/O-bound (a ranged read, a
    publish), so one instance overlaps many events instead of each upload being its own
    instance-request; its CPU, ~2 ms per event (bench/intake), keeps one worker below ~450 events/s,
    which 32 concurrent deliveries reach (8 give ~5x the serial rate, 32-64 level off at the CPU);
    1Gi leaves room for 32 headers in flight (each up to settings.max_header_bytes).
    For more per instance give available_cpu = "2" and workers = 2 (one process per vCPU: threads
    share one core under the GIL). The intake's clients are shared by its threads: the Pub/Sub
    publisher batches concurrent publishes, the storage session pools a connection per thread.
    on_flush: one instance, one request: flushes never overlap (MAX_CONCURRENT_OPERATIONS stays
    exact); each invocation works for settings.flush_run_seconds, so its timeout must exceed that.
    on_operation: one request per instance (its Healthcare API client, httplib2, is not
    thread-safe); it scales out instead. Event-driven functions (on_object_finalized, on_flush) time
    out after at most 540 s, on_operation (Pub/Sub push) after at most 600 s, the push subscription's
    ack deadline; its default, 360 s, is settings.follow_poll_seconds (240) + failure_log_wait_seconds (30)
    + 60 s to reconcile and report.
  EOT
  type = object({
    on_object_finalized = optional(object({
      available_memory                 = optional(string, "1Gi")
      available_cpu                    = optional(string, "1")
      timeout_seconds                  = optional(number, 120)
      min_instance_count               = optional(number, 0)
      max_instance_count               = optional(number, 20)
      max_instance_request_concurrency = optional(number, 32)
      workers                          = optional(number, 1)
    }), {})
    on_flush = optional(object({
      available_memory                 = optional(string, "1Gi")
      available_cpu                    = optional(string)
      timeout_seconds                  = optional(number, 540)
      min_instance_count               = optional(number, 0)
      max_instance_count               = optional(number, 1)
      max_instance_request_concurrency = optional(number, 1)
      workers                          = optional(number, 1)
    }), {})
    on_operation = optional(object({
      available_memory                 = optional(string, "512M")
      available_cpu                    = optional(string)
      timeout_seconds                  = optional(number, 360)
      min_instance_count               = optional(number, 0)
      max_instance_count               = optional(number, 10)
      max_instance_request_concurrency = optional(number, 1)
      workers                          = optional(number, 1)
    }), {})
  })
  default  = {}
  nullable = false

  validation {
    condition = (
      var.functions.on_object_finalized.timeout_seconds >= 1 && var.functions.on_object_finalized.timeout_seconds <= 540
      && var.functions.on_flush.timeout_seconds >= 1 && var.functions.on_flush.timeout_seconds <= 540
      && var.functions.on_operation.timeout_seconds >= 1 && var.functions.on_operation.timeout_seconds <= 600
    )
    error_message = "Timeouts: on_object_finalized and on_flush 1-540 s (event-driven functions), on_operation 1-600 s (the push ack deadline)."
  }
  validation {
    condition = alltrue([
      for f in [var.functions.on_object_finalized, var.functions.on_flush, var.functions.on_operation] :
      f.max_instance_count >= 1 && f.min_instance_count >= 0 && f.min_instance_count <= f.max_instance_count
      && f.max_instance_request_concurrency >= 1 && f.max_instance_request_concurrency <= 1000
    ])
    error_message = "Each function needs 1 <= max_instance_count, 0 <= min_instance_count <= max_instance_count and 1 <= max_instance_request_concurrency <= 1000."
  }
  validation {
    condition = alltrue([
      for f in [var.functions.on_object_finalized, var.functions.on_flush, var.functions.on_operation] :
      f.max_instance_request_concurrency == 1 || (f.available_cpu != null && try(tonumber(f.available_cpu) >= 1, false))
    ])
    error_message = "A function with max_instance_request_concurrency above 1 needs available_cpu of at least 1 (Cloud Functions gen2 rule)."
  }
  validation {
    condition = alltrue([
      for f in [var.functions.on_object_finalized, var.functions.on_flush, var.functions.on_operation] :
      floor(f.workers) == f.workers && f.workers >= 1 && f.workers <= f.max_instance_request_concurrency
    ])
    error_message = "Each function's workers must be a whole number between 1 and its max_instance_request_concurrency."
  }
  validation {
    condition     = var.functions.on_flush.max_instance_count == 1 && var.functions.on_flush.max_instance_request_concurrency == 1
    error_message = "on_flush must run as one instance serving one request (max_instance_count = 1, max_instance_request_concurrency = 1): flushes never overlap."
  }
}

variable "build_service_account_email" {
  description = "Service account Cloud Build uses to build the functions (build_config.service_account). null = the Cloud Functions default (in projects created since mid-2024 the Compute Engine default service account, which then needs roles/cloudbuild.builds.builder)."
  type        = string
  default     = null

  validation {
    condition     = var.build_service_account_email == null ? true : can(regex("^[^@\\s]+@[^@\\s]+\\.iam\\.gserviceaccount\\.com$", var.build_service_account_email))
    error_message = "The build_service_account_email must be a service account email (NAME@PROJECT.iam.gserviceaccount.com)."
  }
}

variable "flush_schedule" {
  description = "Cloud Scheduler cron schedule of the flush tick that triggers on_flush (every minute by default)."
  type        = string
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.flush_schedule))) == 5
    error_message = "The flush_schedule must be a five-field cron expression such as '* * * * *'."
  }
}

variable "flush_time_zone" {
  description = "Time zone of the flush schedule (tz database name)."
  type        = string
  default     = "Etc/UTC"
}

variable "pending_subscription" {
  description = "The pull subscription on_flush reads: `ack_deadline_seconds` (10-600; keep it at settings.flush_lease_seconds: it bounds how long the records of a flush that crashed before its first lease extension stay invisible), `message_retention_seconds` (600-604800; a record not imported within this time is lost) and `max_delivery_attempts` (default null: no Pub/Sub dead-letter policy; on_flush dead-letters the messages it can never process itself, on PENDING_TOPIC-dead-letter, with the reason). A number (5-100) adds Pub/Sub's policy to the same topic as a backstop, with the Pub/Sub service agent's publisher and subscriber grants; records that wait (folders settling, no import capacity) are delivered again every tick and count as attempts, so set it only well above max_wait_seconds / 60 plus the longest capacity wait you expect, in minutes."
  type = object({
    ack_deadline_seconds      = optional(number, 30)
    message_retention_seconds = optional(number, 604800)
    max_delivery_attempts     = optional(number)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.pending_subscription.max_delivery_attempts == null ? true : (var.pending_subscription.max_delivery_attempts >= 5 && var.pending_subscription.max_delivery_attempts <= 100)
    error_message = "The pending_subscription.max_delivery_attempts must be null (no Pub/Sub dead-letter policy) or 5..100."
  }

  validation {
    condition = (
      var.pending_subscription.ack_deadline_seconds >= 10 && var.pending_subscription.ack_deadline_seconds <= 600
      && var.pending_subscription.message_retention_seconds >= 600 && var.pending_subscription.message_retention_seconds <= 604800
    )
    error_message = "The pending_subscription needs 10 <= ack_deadline_seconds <= 600 and 600 <= message_retention_seconds <= 604800."
  }
}

variable "operations_delivery" {
  description = <<-EOT
    Delivery of watch messages from the operations topic to on_operation (a push subscription):
    on_operation polls a running operation for settings.follow_poll_seconds, then answers 500, so
    the retry policy's exponential backoff (`minimum_backoff_seconds`..`maximum_backoff_seconds`)
    is the gap between two poll windows: its ceiling (10 s) bounds how late the end of an operation
    is noticed when it falls in that gap (Pub/Sub's own default, 600 s, would), and a message that
    failed `max_delivery_attempts` times (5-100) goes to the dead-letter topic. Keep
    max_delivery_attempts x (maximum_backoff_seconds + settings.follow_poll_seconds) above
    settings.operation_max_age_seconds so that
    the pipeline reports a stuck operation itself before Pub/Sub gives up on it.
  EOT
  type = object({
    minimum_backoff_seconds = optional(number, 10)
    maximum_backoff_seconds = optional(number, 10)
    max_delivery_attempts   = optional(number, 100)
  })
  default  = {}
  nullable = false

  validation {
    condition = (
      var.operations_delivery.minimum_backoff_seconds >= 0
      && var.operations_delivery.maximum_backoff_seconds <= 600
      && var.operations_delivery.minimum_backoff_seconds <= var.operations_delivery.maximum_backoff_seconds
    )
    error_message = "The backoff must satisfy 0 <= minimum_backoff_seconds <= maximum_backoff_seconds <= 600."
  }
  validation {
    condition     = var.operations_delivery.max_delivery_attempts >= 5 && var.operations_delivery.max_delivery_attempts <= 100
    error_message = "The operations_delivery.max_delivery_attempts must be between 5 and 100 (a Pub/Sub limit)."
  }
}

variable "inspection_subscriptions" {
  description = "Create pull subscriptions (7-day retention) on the results, failed and dead-letter topics, so that their messages are kept until someone reads them (`gcloud pubsub subscriptions pull`). Turn off when your own consumers subscribe."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------

variable "monitoring" {
  description = <<-EOT
    Log-based metrics, alert policies and a dashboard (monitoring.tf, dashboards/dicomflow.json).
    `enabled` (default true); `alignment_seconds`: the window the counts are summed over (60-86400);
    alert thresholds, each alerting when the figure is above it:
      files_failed_threshold (0): files published on the failed topic per window;
      stuck_operations_threshold (0): operations reported stuck per window;
      dead_letter_threshold (0): watch messages in the dead-letter inspection subscription (or, without
        inspection subscriptions, dead-lettered per window);
      pending_record_max_age_seconds (3600): age of the oldest unacknowledged pending record; must exceed
        settings.max_wait_seconds + 60, the time a settling folder is expected to wait;
      function_errors_threshold (0): entries at ERROR or worse a function logs per window.
  EOT
  type = object({
    enabled                        = optional(bool, true)
    alignment_seconds              = optional(number, 300)
    files_failed_threshold         = optional(number, 0)
    stuck_operations_threshold     = optional(number, 0)
    dead_letter_threshold          = optional(number, 0)
    pending_record_max_age_seconds = optional(number, 3600)
    function_errors_threshold      = optional(number, 0)
  })
  default  = {}
  nullable = false

  validation {
    condition = (
      floor(var.monitoring.alignment_seconds) == var.monitoring.alignment_seconds
      && var.monitoring.alignment_seconds >= 60 && var.monitoring.alignment_seconds <= 86400
    )
    error_message = "The monitoring.alignment_seconds must be a whole number of seconds between 60 and 86400."
  }
  validation {
    condition = alltrue([for t in [
      var.monitoring.files_failed_threshold, var.monitoring.stuck_operations_threshold,
      var.monitoring.dead_letter_threshold, var.monitoring.function_errors_threshold,
    ] : t >= 0])
    error_message = "The monitoring thresholds must be at least 0."
  }
  validation {
    condition     = var.monitoring.pending_record_max_age_seconds >= 60
    error_message = "The monitoring.pending_record_max_age_seconds must be at least 60."
  }
}

variable "notification_channels" {
  description = "Notification channels every alert policy notifies, as full names (projects/PROJECT/notificationChannels/ID, e.g. from google_monitoring_notification_channel.x.id). Empty: incidents are only shown in the console."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each notification channel must be a full name: projects/PROJECT/notificationChannels/ID."
  }
}

variable "backfill_job" {
  description = <<-EOT
    Optional Cloud Run job running `dicomflow backfill PREFIX` over files the buckets already held before the
    pipeline was deployed, `tasks` shards in parallel (each task backfills the names whose stable hash falls
    on its CLOUD_RUN_TASK_INDEX, with its own resumable cursor). Created when both `image` (a container image
    with this repository installed: `pip install .`, entrypoint free, e.g. built with `gcloud builds submit`)
    and `prefix` (gs://BUCKET/PREFIX, in a source bucket) are set. `rate` caps objects/s per task.
  EOT
  type = object({
    image                = optional(string)
    prefix               = optional(string)
    tasks                = optional(number, 4)
    rate                 = optional(number)
    task_timeout_seconds = optional(number, 86400)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.backfill_job.prefix == null ? true : can(regex("^gs://[a-z0-9][a-z0-9._\\-]{1,220}[a-z0-9](/.*)?$", var.backfill_job.prefix))
    error_message = "The backfill_job.prefix must be gs://BUCKET[/PREFIX]."
  }
  validation {
    condition     = var.backfill_job.tasks >= 1 && var.backfill_job.tasks <= 10000 && floor(var.backfill_job.tasks) == var.backfill_job.tasks
    error_message = "The backfill_job.tasks must be a whole number between 1 and 10000."
  }
  validation {
    condition     = var.backfill_job.task_timeout_seconds >= 60 && var.backfill_job.task_timeout_seconds <= 604800
    error_message = "The backfill_job.task_timeout_seconds must be between 60 and 604800 (7 days)."
  }
}
