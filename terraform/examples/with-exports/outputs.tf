output "source_buckets" {
  description = "Upload here (gs://BUCKET/any/folder/file.dcm)."
  value       = module.dicomflow.source_buckets
}

output "export_bucket" {
  description = "Exports land under dicom/ (stored DICOM) and png/ (rendered frames)."
  value       = module.dicomflow.export_bucket
}

output "bigquery_table" {
  description = "BigQuery table of the exported DICOM metadata."
  value       = "${google_bigquery_dataset.dicom.project}.${google_bigquery_dataset.dicom.dataset_id}.instances"
}

output "state_bucket" {
  description = "Bucket of batch manifests (under dicomflow/batches/) and state objects."
  value       = module.dicomflow.state_bucket
}

output "dicom_store" {
  description = "Full resource name of the DICOM store."
  value       = module.dicomflow.dicom_store
}

output "topics" {
  description = "Pub/Sub topics by role."
  value       = module.dicomflow.topics
}

output "subscriptions" {
  description = "Pub/Sub subscriptions (pull the *_inspect ones to watch results and failures)."
  value       = module.dicomflow.subscriptions
}

output "functions" {
  description = "Function names by entry point."
  value       = module.dicomflow.functions
}
