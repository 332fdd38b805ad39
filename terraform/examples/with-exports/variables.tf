variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the buckets and the Healthcare dataset."
  type        = string
  default     = "us-central1"
}

variable "source_bucket" {
  description = "Name of the bucket to create for uploads (globally unique)."
  type        = string
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset that receives the DICOM metadata export (US, EU or a region)."
  type        = string
  default     = "US"
}

variable "force_destroy" {
  description = "Let terraform destroy delete buckets that still hold objects and the BigQuery dataset with its tables (test deployments)."
  type        = bool
  default     = false
}

variable "log_hash_key_secret" {
  description = "Secret Manager secret id holding the key of the object-name hash in logs (create it first: see README.md)."
  type        = string
  default     = "dicomflow-log-hash-key"
}
