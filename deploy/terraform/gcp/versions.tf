terraform {
  # Optional cross-variable validation needs Terraform 1.9; 2.x may change the language.
  required_version = "~> 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }
}
