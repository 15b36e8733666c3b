# One service account per component, each granted only what it uses, on the resource
# it uses it on. Project-level grants are limited to roles Google offers at no narrower
# level (running BigQuery jobs, a Dataproc node's agent, writing logs and metrics).

resource "google_service_account" "stream" {
  account_id   = "${var.name_prefix}-stream"
  display_name = "Musify stream (Dataproc nodes)"
  description  = "Runs the Spark stream: reads Kafka, writes the lake and its checkpoints."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "batch" {
  account_id   = "${var.name_prefix}-batch"
  display_name = "Musify batch (Airflow VM)"
  description  = "Runs Airflow and the hourly batch: reads the lake, loads BigQuery, runs dbt."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "dashboard" {
  account_id   = "${var.name_prefix}-dashboard"
  display_name = "Musify dashboard (Cloud Run)"
  description  = "Serves the dashboard: reads the analytics marts."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "kafka" {
  account_id   = "${var.name_prefix}-kafka"
  display_name = "Musify Kafka VM"
  description  = "Runs the Kafka broker and the generator: pulls images, writes logs and metrics."

  depends_on = [google_project_service.enabled]
}

# --- stream ------------------------------------------------------------------------------

# Dataproc requires this role for the VM service account of its nodes (agent, YARN). It
# also carries storage.objects.* on every bucket of the project, which the bucket grants
# below cannot take away (README.md, "Identity").
resource "google_project_iam_member" "stream_dataproc_worker" {
  project = var.project_id
  role    = "roles/dataproc.worker"
  member  = "serviceAccount:${google_service_account.stream.email}"
}

# Write the tables' files, the status record and the checkpoints; remove a killed
# attempt's files.
resource "google_storage_bucket_iam_member" "stream_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.stream.email}"
}

# Commit micro-batches to the lake's tables (create them on first start).
resource "google_biglake_iceberg_catalog_iam_member" "stream_catalog" {
  name   = google_biglake_iceberg_catalog.lake.name
  role   = "roles/biglake.editor"
  member = "serviceAccount:${google_service_account.stream.email}"
}

# The Dataproc nodes install the wheel and run the driver from here: read only (but see
# the dataproc.worker grant above).
resource "google_storage_bucket_iam_member" "stream_artifacts" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.stream.email}"
}

resource "google_storage_bucket_iam_member" "stream_dataproc_bucket" {
  bucket = google_storage_bucket.dataproc.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.stream.email}"
}

# --- batch (Airflow) -----------------------------------------------------------------------

# Load jobs run as the batch and read the tables' files; the daily maintenance DAG
# writes compacted files and removes expired and orphan ones (objectUser: objects only,
# no say over the bucket or its policy).
resource "google_storage_bucket_iam_member" "batch_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.batch.email}"
}

# Plans an hour's files from the tables' metadata; maintenance commits compactions and
# expires snapshots.
resource "google_biglake_iceberg_catalog_iam_member" "batch_catalog" {
  name   = google_biglake_iceberg_catalog.lake.name
  role   = "roles/biglake.editor"
  member = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_bigquery_dataset_iam_member" "batch_raw" {
  dataset_id = google_bigquery_dataset.raw.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_bigquery_dataset_iam_member" "batch_analytics" {
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

# --- dashboard ------------------------------------------------------------------------------

resource "google_bigquery_dataset_iam_member" "dashboard_analytics" {
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.dashboard.email}"
}

# The dashboard says which hour was published last. Only that table of the raw dataset:
# the rest holds the events' personal data.
resource "google_bigquery_table_iam_member" "dashboard_published_hours" {
  dataset_id = google_bigquery_dataset.raw.dataset_id
  table_id   = google_bigquery_table.published_hours.table_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.dashboard.email}"
}

# --- shared project-level roles ---------------------------------------------------------------

# BigQuery jobs (loads, dbt queries, dashboard queries) are created in the project; the
# data they touch is governed by the dataset grants above.
resource "google_project_iam_member" "bigquery_job_user" {
  for_each = {
    batch     = google_service_account.batch.email
    dashboard = google_service_account.dashboard.email
  }
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${each.value}"
}

# The VMs' ops agent ships logs and metrics.
resource "google_project_iam_member" "vm_log_writer" {
  for_each = {
    batch = google_service_account.batch.email
    kafka = google_service_account.kafka.email
  }
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${each.value}"
}

resource "google_project_iam_member" "vm_metric_writer" {
  for_each = {
    batch = google_service_account.batch.email
    kafka = google_service_account.kafka.email
  }
  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${each.value}"
}

# Pull the Musify images from the one repository.
resource "google_artifact_registry_repository_iam_member" "image_readers" {
  for_each = {
    batch     = google_service_account.batch.email
    dashboard = google_service_account.dashboard.email
    kafka     = google_service_account.kafka.email
  }
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${each.value}"
}

# --- people ------------------------------------------------------------------------------------

# Report builders (Looker Studio) read the marts and run queries, nothing else.
resource "google_bigquery_dataset_iam_member" "warehouse_readers" {
  for_each   = toset(var.warehouse_readers)
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = each.value
}

resource "google_project_iam_member" "warehouse_readers_jobs" {
  for_each = toset(var.warehouse_readers)
  project  = var.project_id
  role     = "roles/bigquery.jobUser"
  member   = each.value
}

# Operators reach the VMs only through IAP, and log in with OS Login (no SSH keys in metadata).
resource "google_project_iam_member" "operators_iap" {
  for_each = toset(var.operators)
  project  = var.project_id
  role     = "roles/iap.tunnelResourceAccessor"
  member   = each.value
}

resource "google_project_iam_member" "operators_os_login" {
  for_each = toset(var.operators)
  project  = var.project_id
  role     = "roles/compute.osLogin"
  member   = each.value
}
