# The Kafka VM (broker + generator) and the Airflow VM (Airflow + the batch). Both are
# shielded, have no public IP, use OS Login and refuse project-wide SSH keys.

resource "google_compute_disk" "kafka_data" {
  #checkov:skip=CKV_GCP_37:Encrypted at rest with Google-managed keys; customer-supplied keys would have to be handed to Terraform in plain text on every apply. See "Encryption" in README.md.
  name = "${var.name_prefix}-kafka-data"
  type = "pd-balanced"
  zone = var.zone
  size = var.kafka_disk_size_gb

  depends_on = [google_project_service.enabled]
}

resource "google_compute_instance" "kafka" {
  #checkov:skip=CKV_GCP_38:Boot disk encrypted with Google-managed keys; customer-supplied keys would have to be handed to Terraform in plain text on every apply. See "Encryption" in README.md.
  name                      = "${var.name_prefix}-kafka"
  machine_type              = var.kafka_machine_type
  zone                      = var.zone
  tags                      = [local.network_tags.kafka]
  allow_stopping_for_update = true

  boot_disk {
    initialize_params {
      image = var.vm_image
      size  = 20
      type  = "pd-balanced"
    }
  }

  attached_disk {
    source      = google_compute_disk.kafka_data.id
    device_name = "kafka-data"
  }

  # No access_config block: no public IP. Outbound traffic leaves through Cloud NAT.
  network_interface {
    subnetwork = google_compute_subnetwork.main.id
  }

  service_account {
    email  = google_service_account.kafka.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    enable-oslogin         = "TRUE"
    block-project-ssh-keys = "true"
  }

  metadata_startup_script = templatefile("${path.module}/templates/kafka-startup.sh.tftpl", {
    kafka_image     = var.kafka_image
    retention_hours = var.kafka_retention_hours
    cluster_id      = "yEDwZTAhTfu7s0W2ZRPXkQ"
  })
}

resource "google_compute_instance" "airflow" {
  #checkov:skip=CKV_GCP_38:Boot disk encrypted with Google-managed keys; customer-supplied keys would have to be handed to Terraform in plain text on every apply. See "Encryption" in README.md.
  name                      = "${var.name_prefix}-airflow"
  machine_type              = var.airflow_machine_type
  zone                      = var.zone
  tags                      = [local.network_tags.airflow]
  allow_stopping_for_update = true

  boot_disk {
    initialize_params {
      image = var.vm_image
      size  = 50
      type  = "pd-balanced"
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.main.id
  }

  service_account {
    email  = google_service_account.batch.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    enable-oslogin         = "TRUE"
    block-project-ssh-keys = "true"
  }

  metadata_startup_script = templatefile("${path.module}/templates/airflow-startup.sh.tftpl", {
    registry_host = "${var.region}-docker.pkg.dev"
  })

  depends_on = [google_project_service.enabled]
}
