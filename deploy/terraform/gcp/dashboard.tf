# The dashboard on Cloud Run, reading the BigQuery marts. Created once a Musify release is
# pushed. It requires IAM authentication: only var.dashboard_invokers may call it (open it
# with `gcloud run services proxy`; no allUsers binding exists).

resource "google_cloud_run_v2_service" "dashboard" {
  count               = local.released ? 1 : 0
  name                = "${var.name_prefix}-dashboard"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false

  template {
    service_account = google_service_account.dashboard.email

    scaling {
      min_instance_count = 0
      max_instance_count = 2
    }

    containers {
      image   = "${local.image_repository}/musify:${var.musify_release}"
      command = ["musify", "dashboard", "--host", "0.0.0.0", "--port", "8080"]

      ports {
        container_port = 8080
      }

      env {
        name  = "MUSIFY_HOME"
        value = "/tmp/musify"
      }
      env {
        name  = "MUSIFY_WAREHOUSE_ENGINE"
        value = "bigquery"
      }
      env {
        name  = "MUSIFY_BQ_RAW_DATASET"
        value = google_bigquery_dataset.raw.dataset_id
      }
      env {
        name  = "MUSIFY_BQ_PROJECT"
        value = var.project_id
      }
      env {
        name  = "MUSIFY_BQ_DATASET"
        value = google_bigquery_dataset.analytics.dataset_id
      }
      env {
        name  = "MUSIFY_BQ_LOCATION"
        value = var.bigquery_location
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.bigquery_job_user,
    google_bigquery_dataset_iam_member.dashboard_analytics,
    google_artifact_registry_repository_iam_member.image_readers,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "dashboard_invokers" {
  for_each = local.released ? toset(var.dashboard_invokers) : toset([])
  name     = google_cloud_run_v2_service.dashboard[0].name
  location = google_cloud_run_v2_service.dashboard[0].location
  role     = "roles/run.invoker"
  member   = each.value
}
