# The lake bucket (the Iceberg tables, the stream's status and checkpoints), the artifacts
# bucket (the code Dataproc nodes install), the Dataproc staging bucket and the bucket
# that receives the others' access logs.

resource "google_storage_bucket" "lake" {
  name                        = local.lake_bucket
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "lake"
  }

  # Storage-class rules are limited to the tables' data files. No rule deletes a current
  # object: a data file still named by a snapshot is part of its table (retention is
  # Iceberg's: `musify lake maintain` expires snapshots and removes what they alone
  # held). tests/deploy/test_terraform.py checks this.
  lifecycle_rule {
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
    condition {
      age                   = var.lake_nearline_after_days
      matches_storage_class = ["STANDARD"]
      matches_prefix        = local.lake_data_prefixes
    }
  }

  lifecycle_rule {
    action {
      type          = "SetStorageClass"
      storage_class = "COLDLINE"
    }
    condition {
      age                   = var.lake_coldline_after_days
      matches_storage_class = ["NEARLINE"]
      matches_prefix        = local.lake_data_prefixes
    }
  }

  # Noncurrent versions, on every prefix: whatever the code overwrites or deletes (status
  # records, checkpoint files, files maintenance expired) is recoverable for a while,
  # then gone; no reader ever reads a noncurrent version.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = var.noncurrent_versions_keep_days
      with_state                 = "ARCHIVED"
    }
  }

  lifecycle {
    precondition {
      condition     = var.lake_coldline_after_days > var.lake_nearline_after_days
      error_message = "lake_coldline_after_days must be larger than lake_nearline_after_days."
    }
    precondition {
      condition = alltrue([
        for p in local.lake_data_prefixes :
        !startswith(p, local.checkpoints_prefix) && !startswith(local.checkpoints_prefix, p) && p != ""
      ])
      error_message = "a lifecycle prefix overlaps the stream checkpoints prefix."
    }
  }

  depends_on = [google_project_service.enabled]
}

# The lake's Iceberg catalog, named after its bucket (BigLake metastore's bucket
# catalogs are). No credential vending: each service account reads and writes the files
# with its own bucket grants (iam.tf).
resource "google_biglake_iceberg_catalog" "lake" {
  name         = google_storage_bucket.lake.name
  catalog_type = "CATALOG_TYPE_GCS_BUCKET"

  depends_on = [google_project_service.enabled]
}

# The code the Dataproc nodes install and run: the wheel, the init script, the driver.
# Read by the nodes, written by the operator: no bucket grant lets a service account of
# the deployment write here (iam.tf; README.md, "Identity", for dataproc.worker).
resource "google_storage_bucket" "artifacts" {
  name                        = local.artifacts_bucket
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "artifacts"
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = var.noncurrent_versions_keep_days
      with_state                 = "ARCHIVED"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "dataproc" {
  name                        = local.dataproc_bucket
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only Dataproc's own staging and temporary files live here.
  force_destroy = true

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "dataproc"
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 30
    }
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:This bucket is the access-log sink of the other buckets; logging its own access would log the log writes themselves.
  name                        = local.logs_bucket
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 90
    }
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
  }

  depends_on = [google_project_service.enabled]
}

# Cloud Storage writes usage logs as this Google group; it needs to create objects, nothing more.
resource "google_storage_bucket_iam_member" "access_logs_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

# The Dataproc driver launcher and the node initialization script, at the bucket's root
# next to the wheel the operator uploads (artifacts_path; docs/deploy-gcp.md).
resource "google_storage_bucket_object" "dataproc_init" {
  bucket       = google_storage_bucket.artifacts.name
  name         = "dataproc-init.sh"
  source       = "${path.module}/files/dataproc-init.sh"
  content_type = "text/x-shellscript"
}

resource "google_storage_bucket_object" "musify_driver" {
  bucket       = google_storage_bucket.artifacts.name
  name         = "musify_driver.py"
  source       = "${path.module}/files/musify_driver.py"
  content_type = "text/x-python"
}
