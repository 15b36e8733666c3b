locals {
  lake_bucket     = var.lake_bucket_name != "" ? var.lake_bucket_name : "${var.project_id}-${var.name_prefix}-lake"
  dataproc_bucket = "${var.project_id}-${var.name_prefix}-dataproc"
  logs_bucket     = "${var.project_id}-${var.name_prefix}-access-logs"

  artifacts_bucket = "${var.project_id}-${var.name_prefix}-artifacts"

  # The lake bucket's layout. MUSIFY_LAKE points at lake/, where each Iceberg table
  # (one per topic plus the quarantine, musify.lake.schema) has data/ and metadata/;
  # the catalog that names the tables' current metadata is BigLake metastore's, named
  # after the bucket. checkpoints/ holds the stream's Spark checkpoints. The code the
  # Dataproc nodes install lives in its own bucket, which no bucket grant lets the stream
  # write (README.md, "Identity", says what still can).
  lake_path        = "gs://${local.lake_bucket}/lake"
  checkpoints_path = "gs://${local.lake_bucket}/checkpoints"
  artifacts_path   = "gs://${local.artifacts_bucket}"

  # The only objects whose storage class lifecycle rules may change: the tables' data
  # files. Never metadata/ (Iceberg's current state), never the checkpoints.
  # tests/deploy/test_terraform.py checks the list against musify.lake.schema.
  lake_data_prefixes = [
    "lake/listen_events/data/",
    "lake/page_view_events/data/",
    "lake/auth_events/data/",
    "lake/status_change_events/data/",
    "lake/quarantine/data/",
  ]
  checkpoints_prefix = "checkpoints/"

  # BigLake metastore's Iceberg REST catalog: the stream and the batch share it, and
  # BigQuery reads its tables (musify.lake.tables opens it with Google credentials).
  iceberg_catalog_uri = "https://biglake.googleapis.com/iceberg/v1/restcatalog"

  network_tags = {
    kafka    = "${var.name_prefix}-kafka"
    airflow  = "${var.name_prefix}-airflow"
    dataproc = "${var.name_prefix}-dataproc"
  }

  # Google's documented source range of IAP TCP forwarding: SSH and tunnels only from it.
  iap_source_range = "35.235.240.0/20"

  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  kafka_bootstrap  = "${google_compute_instance.kafka.network_interface[0].network_ip}:9092"
  released         = var.musify_release != ""
}
