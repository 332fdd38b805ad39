# Optional: a Cloud Run job that runs `dicomflow backfill` over an existing archive, one shard per task
# (the CLI reads CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT as --shard I/N; each shard keeps its own
# resumable cursor in the state bucket, so a retried or re-executed task goes on where it stopped).
# Start it with: gcloud run jobs execute PREFIX-backfill --region REGION

locals {
  backfill_enabled = var.backfill_job.image != null && var.backfill_job.prefix != null
}

resource "google_service_account" "backfill" {
  count = local.backfill_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-backfill"
  display_name = "dicomflow backfill job"
  description  = "Runtime identity of the dicomflow backfill job: reads the archive, queries the store, queues records."

  depends_on = [google_project_service.main]
}

# Reads the archive's headers; writes its cursor to the state bucket.
resource "google_storage_bucket_iam_member" "backfill" {
  for_each = local.backfill_enabled ? merge(
    { for b in local.source_bucket_names : "${b} viewer" => { bucket = b, role = "roles/storage.objectViewer" } },
    { "${local.state_bucket_name} user" = { bucket = local.state_bucket_name, role = "roles/storage.objectUser" } },
  ) : {}

  bucket = each.value.bucket
  role   = each.value.role
  member = "serviceAccount:${google_service_account.backfill[0].email}"

  depends_on = [google_storage_bucket.main]
}

# Queues records and reports bad files.
resource "google_pubsub_topic_iam_member" "backfill" {
  for_each = local.backfill_enabled ? toset(["pending", "failed"]) : toset([])

  project = var.project_id
  topic   = google_pubsub_topic.main[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.backfill[0].email}"
}

# Skips instances the store already holds (QIDO-RS).
resource "google_healthcare_dicom_store_iam_member" "backfill" {
  count = local.backfill_enabled ? 1 : 0

  dicom_store_id = google_healthcare_dicom_store.main.id
  role           = "roles/healthcare.dicomViewer"
  member         = "serviceAccount:${google_service_account.backfill[0].email}"
}

# Its logs (the CLI's stderr and output) hash object names like the functions' (settings.log_object_names):
# it reads the same key.
resource "google_secret_manager_secret_iam_member" "backfill_log_hash_key" {
  count = local.backfill_enabled && var.log_hash_key_secret != null ? 1 : 0

  project   = var.project_id
  secret_id = var.log_hash_key_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.backfill[0].email}"
}

resource "google_cloud_run_v2_job" "backfill" {
  count = local.backfill_enabled ? 1 : 0

  project             = var.project_id
  name                = "${var.name_prefix}-backfill"
  location            = var.region
  deletion_protection = false
  labels              = local.labels

  template {
    task_count  = var.backfill_job.tasks
    parallelism = var.backfill_job.tasks

    template {
      service_account = google_service_account.backfill[0].email
      timeout         = "${var.backfill_job.task_timeout_seconds}s"
      max_retries     = 3

      containers {
        image   = var.backfill_job.image
        command = ["dicomflow"]
        args    = concat(["backfill", var.backfill_job.prefix], var.backfill_job.rate == null ? [] : ["--rate", tostring(var.backfill_job.rate)])

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = local.function_env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = var.log_hash_key_secret == null ? [] : [var.log_hash_key_secret]
          content {
            name = "LOG_HASH_KEY"
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  depends_on = [
    google_project_service.main,
    google_storage_bucket_iam_member.backfill,
    google_pubsub_topic_iam_member.backfill,
    google_healthcare_dicom_store_iam_member.backfill,
    google_secret_manager_secret_iam_member.backfill_log_hash_key,
  ]
}
