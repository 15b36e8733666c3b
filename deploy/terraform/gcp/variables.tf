# Inputs of the Musify GCP deployment. README.md in this folder documents each one and
# the two-phase apply (foundation first, then `musify_release` once the image and wheel
# are pushed).

variable "project_id" {
  description = "ID of the GCP project to deploy into (it must exist, with billing enabled)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the bucket, Dataproc, Cloud Run and Artifact Registry (keep the lake next to the compute)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a GCP region such as us-central1."
  }
}

variable "zone" {
  description = "Zone of the Kafka and Airflow VMs and of the Dataproc cluster; it must lie in region."
  type        = string
  default     = "us-central1-a"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]-[a-z]$", var.zone)) && startswith(var.zone, "${var.region}-")
    error_message = "zone must be a zone of region, e.g. us-central1-a for us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (VPC, VMs, cluster, service accounts, datasets' labels)."
  type        = string
  default     = "musify"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-16 lowercase letters, digits or hyphens, starting with a letter (service account IDs are at most 30 characters)."
  }
}

variable "labels" {
  description = "Extra labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "subnet_cidr" {
  description = "Private IPv4 range of the one subnet; Kafka is reachable only from inside it."
  type        = string
  default     = "10.20.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && can(regex("^(10\\.|172\\.(1[6-9]|2[0-9]|3[01])\\.|192\\.168\\.)", var.subnet_cidr))
    error_message = "subnet_cidr must be a private (RFC 1918) CIDR range such as 10.20.0.0/24."
  }
}

variable "lake_bucket_name" {
  description = "Name of the lake bucket; empty means <project_id>-<name_prefix>-lake."
  type        = string
  default     = ""

  validation {
    condition     = var.lake_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.lake_bucket_name))
    error_message = "lake_bucket_name must be a valid bucket name (3-63 lowercase letters, digits, dots, hyphens, underscores)."
  }
}

variable "lake_nearline_after_days" {
  description = "Age in days after which lake data files move to Nearline storage (checkpoints never move)."
  type        = number
  default     = 30

  validation {
    condition     = var.lake_nearline_after_days >= 1 && floor(var.lake_nearline_after_days) == var.lake_nearline_after_days
    error_message = "lake_nearline_after_days must be a whole number of days, at least 1."
  }
}

variable "lake_coldline_after_days" {
  description = "Age in days after which lake data files move from Nearline to Coldline."
  type        = number
  default     = 90

  validation {
    condition     = var.lake_coldline_after_days >= 1 && floor(var.lake_coldline_after_days) == var.lake_coldline_after_days
    error_message = "lake_coldline_after_days must be a whole number of days, at least 1."
  }
}

variable "noncurrent_versions_keep_days" {
  description = "Days an overwritten or deleted object (any prefix of the lake and artifacts buckets) stays recoverable (bucket versioning)."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_versions_keep_days >= 1
    error_message = "noncurrent_versions_keep_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete non-empty buckets and datasets and the deletion-protected publication table (apply it before destroying). Keep false outside experiments."
  type        = bool
  default     = false
}

variable "raw_dataset" {
  description = "BigQuery dataset of the raw event tables `musify batch` loads from the lake (dbt var raw_schema)."
  type        = string
  default     = "raw"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.raw_dataset))
    error_message = "raw_dataset must be a BigQuery dataset ID: letters, digits and underscores."
  }
}

variable "analytics_dataset" {
  description = "BigQuery dataset of the dbt models (staging views, dims, facts, marts): MUSIFY_BQ_DATASET."
  type        = string
  default     = "analytics"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.analytics_dataset))
    error_message = "analytics_dataset must be a BigQuery dataset ID: letters, digits and underscores."
  }
}

variable "bigquery_location" {
  description = "BigQuery location. Load jobs need the bucket inside it: the US multi-region contains every US region."
  type        = string
  default     = "US"
}

variable "vm_image" {
  description = "Boot image of the Kafka and Airflow VMs (Debian 13 ships Docker and Compose v2 as packages)."
  type        = string
  default     = "debian-cloud/debian-13"
}

variable "kafka_machine_type" {
  description = "Machine type of the Kafka VM (a dedicated-core type; shared-core e2-micro/small/medium are too small for a broker)."
  type        = string
  default     = "e2-standard-2"

  validation {
    condition     = !contains(["e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small"], var.kafka_machine_type)
    error_message = "kafka_machine_type must not be a shared-core machine type."
  }
}

variable "kafka_disk_size_gb" {
  description = "Size of the Kafka log disk (a separate persistent disk that survives VM replacement)."
  type        = number
  default     = 100

  validation {
    condition     = var.kafka_disk_size_gb >= 10
    error_message = "kafka_disk_size_gb must be at least 10."
  }
}

variable "kafka_image" {
  description = "The official Apache Kafka image the Kafka VM runs in KRaft mode (a pinned tag)."
  type        = string
  default     = "apache/kafka:4.3.1"

  validation {
    condition     = can(regex("^[^:]+:[0-9][^:]*$", var.kafka_image)) && !endswith(var.kafka_image, ":latest")
    error_message = "kafka_image must be pinned to a version tag, e.g. apache/kafka:4.3.1."
  }
}

variable "kafka_retention_hours" {
  description = "How long Kafka keeps events: the window in which the stream can be replayed or recovered."
  type        = number
  default     = 72
}

variable "dataproc_image_version" {
  description = "Dataproc image of the Spark cluster. 3.0 images carry Spark 4 on Java 17 and Python 3.11, which Musify needs."
  type        = string
  default     = "3.0-debian12"

  validation {
    condition     = can(regex("^[3-9]\\.", var.dataproc_image_version))
    error_message = "dataproc_image_version must be 3.0 or newer (Spark 4, Python 3.11)."
  }
}

variable "spark_kafka_package" {
  description = "Maven coordinates of Spark's Kafka connector; its version must equal the image's Spark version."
  type        = string
  default     = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0"

  validation {
    condition     = can(regex("^org\\.apache\\.spark:spark-sql-kafka-0-10_2\\.13:[0-9]+\\.[0-9]+\\.[0-9]+$", var.spark_kafka_package))
    error_message = "spark_kafka_package must be org.apache.spark:spark-sql-kafka-0-10_2.13:<spark version>."
  }
}

variable "dataproc_master_machine_type" {
  description = "Machine type of the Dataproc master (runs the stream's driver)."
  type        = string
  default     = "n2-standard-4"

  validation {
    # Dataproc supports N1, N2, N2D, E2, C2, C2D, C3, C4, C4A, N4, M1 and M2 predefined
    # types, but neither shared-core types nor n1-standard-1 on 2.0+ images.
    condition = can(regex("^(n1|n2|n2d|e2|c2|c2d|c3|c4|c4a|n4|m1|m2)-", var.dataproc_master_machine_type)) && !contains(
      ["e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small", "n1-standard-1"], var.dataproc_master_machine_type
    )
    error_message = "dataproc_master_machine_type must be a Dataproc-supported type (not shared-core, not n1-standard-1), e.g. n2-standard-4."
  }
}

variable "dataproc_worker_machine_type" {
  description = "Machine type of the Dataproc workers (run the stream's executors)."
  type        = string
  default     = "n2-standard-4"

  validation {
    condition = can(regex("^(n1|n2|n2d|e2|c2|c2d|c3|c4|c4a|n4|m1|m2)-", var.dataproc_worker_machine_type)) && !contains(
      ["e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small", "n1-standard-1"], var.dataproc_worker_machine_type
    )
    error_message = "dataproc_worker_machine_type must be a Dataproc-supported type (not shared-core, not n1-standard-1), e.g. n2-standard-4."
  }
}

variable "dataproc_worker_count" {
  description = "Primary workers of the Dataproc cluster: at least 2 for a standard cluster, or 0 for a single-node cluster (the master runs everything; enough at Streamify's event rate, at a third of the cost)."
  type        = number
  default     = 2

  validation {
    condition     = var.dataproc_worker_count == 0 || var.dataproc_worker_count >= 2
    error_message = "dataproc_worker_count must be 0 (single node) or at least 2."
  }
}

variable "dataproc_disk_size_gb" {
  description = "Boot disk size of each Dataproc node."
  type        = number
  default     = 100

  validation {
    condition     = var.dataproc_disk_size_gb >= 30
    error_message = "dataproc_disk_size_gb must be at least 30."
  }
}

variable "airflow_machine_type" {
  description = "Machine type of the Airflow VM (API server, scheduler, DAG processor, Postgres, dbt)."
  type        = string
  default     = "e2-standard-2"

  validation {
    condition     = !contains(["e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small"], var.airflow_machine_type)
    error_message = "airflow_machine_type must not be a shared-core machine type."
  }
}

variable "musify_release" {
  description = "Musify version whose image (Artifact Registry) and wheel (the artifacts bucket) are pushed. Empty for the first apply: the Dataproc cluster and the dashboard are created once it is set."
  type        = string
  default     = ""

  validation {
    condition     = var.musify_release == "" || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+([.a-z0-9]*)$", var.musify_release))
    error_message = "musify_release must be empty or a version such as 0.1.0."
  }
}

variable "musify_wheel_extras" {
  description = "Extras installed with the Musify wheel on the Dataproc nodes: gcp (gcsfs, through which the Spark tasks write the gs:// lake); never `stream`: the cluster brings its own pyspark."
  type        = string
  default     = "gcp"

  validation {
    condition     = !contains(split(",", var.musify_wheel_extras), "stream")
    error_message = "musify_wheel_extras must not contain stream: it would replace the cluster's pyspark."
  }
}

variable "dashboard_invokers" {
  description = "Principals allowed to open the dashboard (Cloud Run, IAM-authenticated), e.g. [\"user:ana@example.com\", \"group:analysts@example.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.dashboard_invokers : can(regex("^(user|group|serviceAccount|domain):.+", m))
    ])
    error_message = "dashboard_invokers must name users, groups, service accounts or domains; allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "operators" {
  description = "Principals allowed to reach the VMs over IAP (SSH with OS Login, the Airflow UI tunnel), e.g. [\"user:ops@example.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.operators : can(regex("^(user|group|serviceAccount|domain):.+", m))
    ])
    error_message = "operators must name users, groups, service accounts or domains; allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "warehouse_readers" {
  description = "Principals who may query the analytics dataset, e.g. the people who build Looker Studio reports on the marts."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.warehouse_readers : can(regex("^(user|group|serviceAccount|domain):.+", m))
    ])
    error_message = "warehouse_readers must name users, groups, service accounts or domains; allUsers and allAuthenticatedUsers are not allowed."
  }
}
