# Spark on Dataproc for the stream. Created once a Musify release is pushed
# (var.musify_release): its nodes install that wheel at creation.

locals {
  dataproc_properties = merge(
    {
      # Spark's Kafka connector for every job (resolved from Maven through Cloud NAT).
      "spark:spark.jars.packages" = var.spark_kafka_package
      # The stream's settings, as MUSIFY_* variables of every Spark driver.
      "spark-env:MUSIFY_HOME"              = "/var/lib/musify"
      "spark-env:MUSIFY_LAKE"              = local.lake_path
      "spark-env:MUSIFY_ICEBERG_CATALOG"   = local.iceberg_catalog_uri
      "spark-env:MUSIFY_CHECKPOINT"        = "${local.checkpoints_path}/stream"
      "spark-env:MUSIFY_BOOTSTRAP_SERVERS" = local.kafka_bootstrap
      "spark-env:MUSIFY_KAFKA_SOURCE"      = "kafka"
      "spark-env:MUSIFY_SPARK_MASTER"      = "yarn"
    },
    # A single-node cluster: the master runs YARN's node manager too.
    var.dataproc_worker_count == 0 ? { "dataproc:dataproc.allow.zero.workers" = "true" } : {},
  )
}

resource "google_dataproc_cluster" "spark" {
  #checkov:skip=CKV_GCP_91:Disks encrypted with Google-managed keys; a CMEK key adds a KMS key ring and service-agent grants for simulated data with no key-custody requirement. See "Encryption" in README.md.
  count                         = local.released ? 1 : 0
  name                          = "${var.name_prefix}-spark"
  region                        = var.region
  graceful_decommission_timeout = "120s"

  cluster_config {
    staging_bucket = google_storage_bucket.dataproc.name
    temp_bucket    = google_storage_bucket.dataproc.name

    gce_cluster_config {
      zone                   = var.zone
      subnetwork             = google_compute_subnetwork.main.id
      internal_ip_only       = true
      service_account        = google_service_account.stream.email
      service_account_scopes = ["cloud-platform"]
      tags                   = [local.network_tags.dataproc]

      shielded_instance_config {
        enable_secure_boot          = true
        enable_vtpm                 = true
        enable_integrity_monitoring = true
      }

      metadata = {
        enable-oslogin         = "TRUE"
        block-project-ssh-keys = "true"
        musify-wheel           = "${local.artifacts_path}/musify-${var.musify_release}-py3-none-any.whl"
        musify-extras          = var.musify_wheel_extras
      }
    }

    master_config {
      num_instances = 1
      machine_type  = var.dataproc_master_machine_type
      disk_config {
        boot_disk_type    = "pd-balanced"
        boot_disk_size_gb = var.dataproc_disk_size_gb
      }
    }

    worker_config {
      num_instances = var.dataproc_worker_count
      machine_type  = var.dataproc_worker_machine_type
      disk_config {
        boot_disk_type    = "pd-balanced"
        boot_disk_size_gb = var.dataproc_disk_size_gb
      }
    }

    software_config {
      image_version       = var.dataproc_image_version
      override_properties = local.dataproc_properties
    }

    initialization_action {
      script      = "gs://${google_storage_bucket.artifacts.name}/${google_storage_bucket_object.dataproc_init.name}"
      timeout_sec = 600
    }

    endpoint_config {
      enable_http_port_access = false
    }
  }

  depends_on = [
    google_project_iam_member.stream_dataproc_worker,
    google_storage_bucket_iam_member.stream_lake,
    google_storage_bucket_iam_member.stream_artifacts,
    google_storage_bucket_iam_member.stream_dataproc_bucket,
    google_compute_firewall.dataproc_internal,
    google_compute_router_nat.main,
  ]
}
