variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the buckets and the Healthcare datasets (source and research)."
  type        = string
  default     = "us-central1"
}

variable "source_bucket" {
  description = "Name of the bucket to create for uploads (globally unique)."
  type        = string
}

variable "research_readers" {
  description = "Principals (user:..., group:..., serviceAccount:...) who may read the de-identified copies (roles/healthcare.dicomViewer on the research store)."
  type        = list(string)
  default     = []
}

variable "force_destroy" {
  description = "Let terraform destroy delete buckets that still hold objects (test deployments)."
  type        = bool
  default     = false
}

variable "log_hash_key_secret" {
  description = "Secret Manager secret id holding the key of the object-name hash in logs (create it first: see README.md)."
  type        = string
  default     = "dicomflow-log-hash-key"
}
