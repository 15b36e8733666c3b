# One VPC with one private subnet. Nothing has a public IP: Cloud NAT gives the VMs and
# Dataproc nodes outbound access (image pulls, Maven, pip), Private Google Access reaches
# Google APIs, and people come in through IAP only.

resource "google_compute_network" "main" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "main" {
  name                     = "${var.name_prefix}-subnet"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "main" {
  name    = "${var.name_prefix}-router"
  region  = var.region
  network = google_compute_network.main.id
}

resource "google_compute_router_nat" "main" {
  name                               = "${var.name_prefix}-nat"
  router                             = google_compute_router.main.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Ingress rules. The VPC denies all other ingress by default; none of these rules names
# 0.0.0.0/0.

resource "google_compute_firewall" "iap_ssh" {
  name          = "${var.name_prefix}-allow-iap-ssh"
  network       = google_compute_network.main.id
  description   = "SSH (OS Login) only through IAP TCP forwarding."
  direction     = "INGRESS"
  source_ranges = [local.iap_source_range]
  target_tags   = values(local.network_tags)

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "iap_airflow_ui" {
  name          = "${var.name_prefix}-allow-iap-airflow-ui"
  network       = google_compute_network.main.id
  description   = "The Airflow UI, only through an IAP tunnel (gcloud compute start-iap-tunnel)."
  direction     = "INGRESS"
  source_ranges = [local.iap_source_range]
  target_tags   = [local.network_tags.airflow]

  allow {
    protocol = "tcp"
    ports    = ["8080"]
  }
}

resource "google_compute_firewall" "kafka_internal" {
  name          = "${var.name_prefix}-allow-kafka-internal"
  network       = google_compute_network.main.id
  description   = "Kafka clients (the stream's executors, the batch's freshness check) from inside the subnet only."
  direction     = "INGRESS"
  source_ranges = [var.subnet_cidr]
  target_tags   = [local.network_tags.kafka]

  allow {
    protocol = "tcp"
    ports    = ["9092"]
  }
}

resource "google_compute_firewall" "dataproc_internal" {
  name        = "${var.name_prefix}-allow-dataproc-internal"
  network     = google_compute_network.main.id
  description = "Dataproc nodes talk to each other on any port (YARN, HDFS, Spark shuffle)."
  direction   = "INGRESS"
  source_tags = [local.network_tags.dataproc]
  target_tags = [local.network_tags.dataproc]

  allow {
    protocol = "tcp"
  }
  allow {
    protocol = "udp"
  }
  allow {
    protocol = "icmp"
  }
}
