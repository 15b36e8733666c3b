# The warehouse: raw event tables loaded from the lake, and the dbt models.

resource "google_bigquery_dataset" "raw" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest; a CMEK key adds a KMS key ring and service-agent grants for simulated data with no key-custody requirement.
  dataset_id                 = var.raw_dataset
  friendly_name              = "Musify raw events"
  description                = "Raw event tables, one per topic, loaded hour by hour from the committed lake files by `musify batch`."
  location                   = var.bigquery_location
  delete_contents_on_destroy = var.force_destroy

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_dataset" "analytics" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest; a CMEK key adds a KMS key ring and service-agent grants for simulated data with no key-custody requirement.
  dataset_id                 = var.analytics_dataset
  friendly_name              = "Musify analytics"
  description                = "dbt models: staging views, dimensions, facts and the marts the dashboard and Looker Studio read."
  location                   = var.bigquery_location
  delete_contents_on_destroy = var.force_destroy

  depends_on = [google_project_service.enabled]
}
