terraform {
  # optional() object attributes with defaults need 1.3; 1.5 is the oldest release we document.
  required_version = ">= 1.5.0"

  required_providers {
    # ~> 8.7: scripts/terraform_schema.py checks every block against the 8.7.0 schema.
    google = {
      source  = "hashicorp/google"
      version = "~> 8.7"
    }
    # Only for google_project_service_identity (the Healthcare and Pub/Sub service agents), which the
    # provider ships in its beta flavour alone.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 8.7"
    }
    # >= 2.4: `excludes` takes glob patterns (`**/__pycache__`).
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }
}
