output "lake_bucket" {
  description = "Name of the lake bucket."
  value       = google_storage_bucket.lake.name
}

output "musify_lake" {
  description = "MUSIFY_LAKE for the stream and the batch."
  value       = local.lake_path
}

output "musify_iceberg_catalog" {
  description = "MUSIFY_ICEBERG_CATALOG for the stream and the batch: BigLake metastore's Iceberg REST catalog (the catalog is named after the lake bucket)."
  value       = local.iceberg_catalog_uri
}

output "checkpoints_path" {
  description = "Where the stream keeps its Spark checkpoints (never touched by lifecycle rules)."
  value       = local.checkpoints_path
}

output "artifacts_path" {
  description = "The artifacts bucket: upload the Musify wheel (musify-<release>-py3-none-any.whl) here before setting musify_release."
  value       = local.artifacts_path
}

output "bigquery_raw_dataset" {
  description = "Fully qualified raw dataset (project.dataset)."
  value       = "${var.project_id}.${google_bigquery_dataset.raw.dataset_id}"
}

output "bigquery_analytics_dataset" {
  description = "Fully qualified analytics dataset holding the marts (project.dataset): point Looker Studio here."
  value       = "${var.project_id}.${google_bigquery_dataset.analytics.dataset_id}"
}

output "image_repository" {
  description = "Artifact Registry path to push the images to: <this>/musify:<release> and <this>/musify-airflow:<release>."
  value       = local.image_repository
}

output "kafka_bootstrap_servers" {
  description = "MUSIFY_BOOTSTRAP_SERVERS inside the VPC (the Kafka VM's internal address)."
  value       = local.kafka_bootstrap
}

output "kafka_vm" {
  description = "Name of the Kafka VM (gcloud compute ssh <name> --tunnel-through-iap)."
  value       = google_compute_instance.kafka.name
}

output "airflow_vm" {
  description = "Name of the Airflow VM (gcloud compute start-iap-tunnel <name> 8080 --local-host-port=localhost:8080)."
  value       = google_compute_instance.airflow.name
}

output "dataproc_cluster" {
  description = "Name of the Dataproc cluster running the stream (empty until musify_release is set)."
  value       = local.released ? google_dataproc_cluster.spark[0].name : ""
}

output "dashboard_url" {
  description = "URL of the dashboard on Cloud Run (IAM-authenticated; empty until musify_release is set)."
  value       = local.released ? google_cloud_run_v2_service.dashboard[0].uri : ""
}

output "service_accounts" {
  description = "Email of each component's service account."
  value = {
    stream    = google_service_account.stream.email
    batch     = google_service_account.batch.email
    dashboard = google_service_account.dashboard.email
    kafka     = google_service_account.kafka.email
  }
}
