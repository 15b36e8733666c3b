# The warehouse: raw event tables loaded from the lake, and the dbt models.

resource "google_bigquery_dataset" "raw" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest; a CMEK key adds a KMS key ring and service-agent grants for simulated data with no key-custody requirement. See "Encryption" in README.md.
  dataset_id                 = var.raw_dataset
  friendly_name              = "Musify raw events"
  description                = "Raw event tables, one per topic, loaded hour by hour from the committed lake files by `musify batch`."
  location                   = var.bigquery_location
  delete_contents_on_destroy = var.force_destroy

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_dataset" "analytics" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest; a CMEK key adds a KMS key ring and service-agent grants for simulated data with no key-custody requirement. See "Encryption" in README.md.
  dataset_id                 = var.analytics_dataset
  friendly_name              = "Musify analytics"
  description                = "dbt models: staging views, dimensions, facts and the marts the dashboard and Looker Studio read."
  location                   = var.bigquery_location
  delete_contents_on_destroy = var.force_destroy

  depends_on = [google_project_service.enabled]
}

# The publication records `musify batch` writes (musify.warehouse.bigquery_engine creates
# the same table if it is missing). Created here so the dashboard can be granted this
# table and nothing else of the raw dataset (iam.tf).
resource "google_bigquery_table" "published_hours" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest, as everywhere in this deployment. See "Encryption" in README.md.
  dataset_id  = google_bigquery_dataset.raw.dataset_id
  table_id    = "published_hours"
  description = "One row per published hour: when, the reconciled counts and the lake snapshots they came from."
  schema      = file("${path.module}/files/published_hours.schema.json")

  # Protected like the datasets: only an apply with force_destroy lifts it, so the
  # documented teardown (apply, then destroy, with force_destroy) can remove the table.
  # A conditional rather than `!var.force_destroy`, which checkov cannot evaluate.
  deletion_protection = var.force_destroy ? false : true
}
