output "source_buckets" {
  description = "Upload here (gs://BUCKET/any/folder/file.dcm)."
  value       = module.dicomflow.source_buckets
}

output "dicom_store" {
  description = "Full resource name of the DICOM store (identified data)."
  value       = module.dicomflow.dicom_store
}

output "research_store" {
  description = "Full resource name of the research DICOM store (de-identified copies)."
  value       = module.dicomflow.research_store
}

output "research_notification_topic" {
  description = "Topic of the research store's notifications (one message per stored instance)."
  value       = module.dicomflow.research_notification_topic
}

output "research_subscription" {
  description = "Pull subscription on the research notifications, for the research users."
  value       = google_pubsub_subscription.research.name
}

output "subscriptions" {
  description = "Pub/Sub subscriptions of the pipeline (pull the *_inspect ones to watch results and failures)."
  value       = module.dicomflow.subscriptions
}
