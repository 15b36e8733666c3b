provider "google" {
  project = var.project_id
  region  = var.region
  zone    = var.zone

  default_labels = merge(var.labels, { app = var.name_prefix, managed-by = "terraform" })
}
