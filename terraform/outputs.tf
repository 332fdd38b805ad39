output "source_buckets" {
  description = "Buckets whose uploads are imported (SOURCE_BUCKETS)."
  value       = local.source_bucket_names
}

output "state_bucket" {
  description = "Bucket of batch manifests, state objects and filter files (STATE_BUCKET)."
  value       = local.state_bucket_name
}

output "state_prefix" {
  description = "Prefix of the pipeline's own objects in the state bucket (STATE_PREFIX)."
  value       = local.state_prefix
}

output "export_bucket" {
  description = "Bucket for GCS export targets (null when export_bucket.enabled is false)."
  value       = local.export_bucket_name
}

output "function_source_bucket" {
  description = "Bucket holding the zipped function source (objects named by their MD5)."
  value       = local.source_code_bucket_name
}

output "function_source_object" {
  description = "Object of the deployed function source; it changes name, and the functions redeploy, when the code changes."
  value       = google_storage_bucket_object.source.name
}

output "healthcare_dataset" {
  description = "Full resource name of the Healthcare dataset."
  value       = google_healthcare_dataset.main.id
}

output "dicom_store" {
  description = "Full resource name of the DICOM store (projects/P/locations/L/datasets/D/dicomStores/S)."
  value       = google_healthcare_dicom_store.main.id
}

output "dicomweb_url" {
  description = "DICOMweb base URL of the store (QIDO-RS/WADO-RS/STOW-RS)."
  value       = "https://healthcare.googleapis.com/v1/${google_healthcare_dicom_store.main.id}/dicomWeb"
}

output "topics" {
  description = "Pub/Sub topic names by role: pending, operations, failed, results, dead_letter, flush_tick."
  value       = { for key, topic in google_pubsub_topic.main : key => topic.name }
}

output "store_notification_topic" {
  description = "Full name of the DICOM store's notification topic, created or reused (null unless store_notifications.enabled)."
  value       = local.store_notification_topic_id
}

output "subscriptions" {
  description = "Pub/Sub subscription names: pending (pulled by on_flush), operations (pushes to on_operation) and the inspection pull subscriptions."
  value = merge(
    {
      pending    = google_pubsub_subscription.pending.name
      operations = google_pubsub_subscription.operations.name
    },
    { for key, sub in google_pubsub_subscription.inspect : "${key}_inspect" => sub.name },
  )
}

output "functions" {
  description = "Function names by entry point."
  value       = { for key, fn in google_cloudfunctions2_function.main : key => fn.name }
}

output "function_uris" {
  description = "Cloud Run URIs of the functions by entry point (internal ingress: reachable from Eventarc and Pub/Sub of this project only)."
  value       = { for key, fn in google_cloudfunctions2_function.main : key => fn.service_config[0].uri }
}

output "service_accounts" {
  description = "Service account emails: one per function, plus the invoker used by the triggers."
  value = merge(
    { for key, sa in google_service_account.function : key => sa.email },
    { invoker = google_service_account.invoker.email },
  )
}

output "scheduler_job" {
  description = "Cloud Scheduler job that publishes the flush tick."
  value       = google_cloud_scheduler_job.flush.id
}

output "function_environment" {
  description = "Environment variables every function receives (for reproducing a deployment locally)."
  value       = local.function_env
}

output "monitoring" {
  description = "Alert policy names by signal, log-based metric names and the dashboard id (null when monitoring.enabled is false)."
  value = var.monitoring.enabled ? {
    alert_policies = { for key, policy in google_monitoring_alert_policy.main : key => policy.name }
    log_metrics    = [for metric in concat(google_logging_metric.operations_stuck, google_logging_metric.function_errors) : metric.name]
    dashboard      = one(google_monitoring_dashboard.main[*].id)
  } : null
}

output "research_store" {
  description = "Full name of the research DICOM store that receives the de-identified copies (created, or research.existing_store); null unless research.enabled."
  value       = local.research_store_name
}

output "research_notification_topic" {
  description = "Full name of the research store's notification topic (one message per stored instance); null unless the module created the research store."
  value       = local.research_topic_id
}
