locals {
  lake_bucket     = var.lake_bucket_name != "" ? var.lake_bucket_name : "${var.project_id}-${var.name_prefix}-lake"
  dataproc_bucket = "${var.project_id}-${var.name_prefix}-dataproc"
  logs_bucket     = "${var.project_id}-${var.name_prefix}-access-logs"

  # The lake bucket's layout. MUSIFY_LAKE points at lake/, whose data folders are one per
  # topic plus the quarantine (musify.lake.layout); lake/_commits/ holds the commit
  # records. checkpoints/ holds the stream's Spark checkpoints, artifacts/ the Musify
  # wheel and the Dataproc scripts.
  lake_path        = "gs://${local.lake_bucket}/lake"
  checkpoints_path = "gs://${local.lake_bucket}/checkpoints"
  artifacts_path   = "gs://${local.lake_bucket}/artifacts"

  # The only objects lifecycle rules may touch: event and quarantine files. Never the
  # checkpoints (deleting them would make the stream re-read or skip Kafka data) and
  # never the commit records.
  lake_data_prefixes = [
    "lake/listen_events/",
    "lake/page_view_events/",
    "lake/auth_events/",
    "lake/status_change_events/",
    "lake/_quarantine/",
  ]
  checkpoints_prefix = "checkpoints/"

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
