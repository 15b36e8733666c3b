resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption at rest; the images hold only open-source code, a CMEK key would add a KMS key ring for nothing to protect. See "Encryption" in README.md.
  location      = var.region
  repository_id = var.name_prefix
  description   = "Musify container images (musify, musify-airflow)."
  format        = "DOCKER"

  docker_config {
    # A release tag always means the same image: redeploys are reproducible.
    immutable_tags = true
  }

  depends_on = [google_project_service.enabled]
}
