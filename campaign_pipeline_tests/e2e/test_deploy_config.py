"""The Kubernetes deployment files load: instance config through Dagster's own validation, Helm values as the chart expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import (
    ConcurrencyConfig,
    PoolGranularity,
    class_from_code_pointer,
    dagster_instance_config,
)
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._serdes import ConfigurableClassData

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster.k8s.yaml"
HELM_VALUES = REPO_ROOT / "deploy" / "helm" / "values.yaml"
DEPLOYMENT_DOCS = REPO_ROOT / "docs" / "deployment.md"
DUMMY_ENV = {
    "DAGSTER_PG_HOST": "postgres.test.invalid",
    "DAGSTER_PG_PORT": "6543",
    "DAGSTER_PG_DB": "dagster_test",
    "DAGSTER_PG_USERNAME": "dagster_user",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "DAGSTER_K8S_JOB_NAMESPACE": "campaign-pipeline",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster",
    "CAMPAIGN_PIPELINE_IMAGE": "registry.example.com/campaign-pipeline:0.1.0",
}
# Assets name these pools; the deployment must bound both.
POOLS = ("mailchimp", "salesforce")
MAILCHIMP_CONNECTIONS_PER_KEY = 10


@pytest.fixture
def deploy_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)
    return DUMMY_ENV


@pytest.fixture
def instance_config(deploy_env, tmp_path: Path) -> dict:
    """deploy/dagster.k8s.yaml validated against Dagster's instance schema, env vars resolved."""
    shutil.copy(INSTANCE_YAML, tmp_path / "dagster.yaml")
    validated, custom_instance_class = dagster_instance_config(str(tmp_path))
    assert custom_instance_class is None
    return dict(validated)


def _class_config(section: dict) -> tuple[type, dict]:
    """The configurable class a section names, and its config checked against that class's own schema."""
    cls = class_from_code_pointer(section["module"], section["class"])
    result = process_config(cls.config_type(), section.get("config") or {})
    assert result.success, f"{section['class']}: {[error.message for error in result.errors or []]}"
    return cls, dict(result.value or {})


def test_instance_config_validates_and_storage_comes_from_env(instance_config):
    from dagster_postgres import DagsterPostgresStorage

    storage = process_config(DagsterPostgresStorage.config_type(), instance_config["storage"]["postgres"])
    assert storage.success, [error.message for error in storage.errors or []]
    db = storage.value["postgres_db"]
    assert (db["hostname"], db["port"], db["db_name"], db["username"], db["password"]) == (
        "postgres.test.invalid",
        6543,
        "dagster_test",
        "dagster_user",
        "not-a-secret",
    )


def test_a_missing_env_var_is_reported_by_name(instance_config, monkeypatch: pytest.MonkeyPatch):
    from dagster_postgres import DagsterPostgresStorage

    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    storage = process_config(DagsterPostgresStorage.config_type(), instance_config["storage"]["postgres"])
    assert not storage.success
    assert any("DAGSTER_PG_PASSWORD" in error.message for error in storage.errors)


@pytest.fixture
def run_coordinator(instance_config) -> QueuedRunCoordinator:
    """The run coordinator built from the file, as the daemon builds it."""
    cls, config = _class_config(instance_config["run_coordinator"])
    assert cls is QueuedRunCoordinator
    section = instance_config["run_coordinator"]
    return ConfigurableClassData(section["module"], section["class"], yaml.safe_dump(config)).rehydrate(
        as_type=QueuedRunCoordinator
    )


def test_runs_queue_and_the_coordinator_loads(run_coordinator):
    assert run_coordinator.dequeue_interval_seconds == 5


def test_k8s_run_launcher_config_builds_a_launcher(instance_config, tmp_path: Path):
    from dagster_k8s import K8sRunLauncher  # the `k8s` extra, part of `dev`: a missing install fails, not skips

    cls, config = _class_config(instance_config["run_launcher"])
    assert cls is K8sRunLauncher
    assert config["load_incluster_config"] is True
    # Outside a cluster there is no in-cluster service account; a stub kubeconfig lets the launcher be built
    # from exactly this config otherwise, which proves every field maps onto the class.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stub", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "stub", "user": {"token": "stub"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                "current-context": "stub",
            }
        )
    )
    launcher = K8sRunLauncher(**{**config, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)})
    assert launcher.job_namespace == DUMMY_ENV["DAGSTER_K8S_JOB_NAMESPACE"]
    assert launcher.instance_config_map == DUMMY_ENV["DAGSTER_K8S_INSTANCE_CONFIG_MAP"]
    assert launcher.job_image == DUMMY_ENV["CAMPAIGN_PIPELINE_IMAGE"]
    assert "campaign-pipeline-secrets" in launcher.env_secrets


def test_compute_log_manager_loads(instance_config):
    _class_config(instance_config["compute_logs"])


def test_pools_bound_mailchimp_connections_and_runs_are_capped(instance_config, run_coordinator):
    # Combined the way DagsterInstance.get_concurrency_config does it.
    concurrency = ConcurrencyConfig.from_concurrency_settings(
        instance_config["concurrency"], run_coordinator.get_run_queue_config()
    )
    assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
    default_limit = concurrency.pool_config.default_pool_limit
    assert default_limit is not None and default_limit >= 1, "every pool must be bounded from the first run"
    from campaign_pipeline.mailchimp.resource import MailchimpResource

    # Each Mailchimp step may hold max_connections requests at once, so steps × connections must fit the key's cap.
    per_step = MailchimpResource.model_fields["max_connections"].default
    assert default_limit * per_step <= MAILCHIMP_CONNECTIONS_PER_KEY
    assert concurrency.run_queue_config is not None
    assert concurrency.run_queue_config.max_concurrent_runs == 20
    backfill_limits = [
        limit for limit in concurrency.run_queue_config.tag_concurrency_limits if limit["key"] == "dagster/backfill"
    ]
    assert backfill_limits and backfill_limits[0]["limit"] < concurrency.run_queue_config.max_concurrent_runs


def test_the_pools_the_docs_set_are_the_pools_assets_use():
    from campaign_pipeline.mailchimp.assets import MAILCHIMP_POOL
    from campaign_pipeline.salesforce.assets import SALESFORCE_POOL

    assert (MAILCHIMP_POOL, SALESFORCE_POOL) == POOLS
    docs = DEPLOYMENT_DOCS.read_text()
    for pool in POOLS:
        assert f"dagster instance concurrency set {pool} " in docs, f"docs/deployment.md must say how to limit {pool}"


@pytest.fixture(scope="module")
def helm_values() -> dict:
    return yaml.safe_load(HELM_VALUES.read_text())


def test_helm_values_use_the_k8s_launcher_queued_coordinator_and_external_postgres(helm_values):
    assert helm_values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "campaign-pipeline-secrets"} in launcher["envSecrets"]
    coordinator = helm_values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    # The chart fails to render when run limits are set in both places.
    assert "maxConcurrentRuns" not in coordinator["config"]["queuedRunCoordinator"]
    assert helm_values["postgresql"]["enabled"] is False
    assert helm_values["postgresql"]["postgresqlHost"]
    assert helm_values["generatePostgresqlPasswordSecret"] is False
    assert helm_values["global"]["postgresqlSecretName"] == DUMMY_ENV["DAGSTER_K8S_PG_PASSWORD_SECRET"]


def test_helm_webserver_and_daemon_run_the_pinned_dagster_version(helm_values):
    from importlib.metadata import version

    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert str(helm_values[component]["image"]["tag"]) == version("dagster"), component


def test_helm_user_code_deployment_runs_this_project(helm_values):
    user_code = helm_values["dagster-user-deployments"]
    assert user_code["enabled"] and user_code["enableSubchart"]
    (deployment,) = user_code["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "campaign_pipeline.definitions"
    assert deployment["image"]["repository"] and deployment["image"]["tag"] != "latest"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert {"name": "campaign-pipeline-secrets"} in deployment["envSecrets"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["CAMPAIGN_PIPELINE_PROFILE"].endswith("sync_profile.yaml")


def test_helm_and_instance_config_agree_on_concurrency(helm_values, instance_config):
    helm = helm_values["concurrency"]
    instance = instance_config["concurrency"]
    assert helm["enabled"] is True
    assert helm["pools"]["granularity"] == instance["pools"]["granularity"]
    assert helm["pools"]["defaultLimit"] == instance["pools"]["default_limit"]
    assert helm["runs"]["maxConcurrentRuns"] == instance["runs"]["max_concurrent_runs"]
    assert [(limit["key"], limit["limit"]) for limit in helm["runs"]["tagConcurrencyLimits"]] == [
        (limit["key"], limit["limit"]) for limit in instance["runs"]["tag_concurrency_limits"]
    ]


def test_run_monitoring_fails_dead_run_pods_and_frees_their_slots(instance_config, helm_values):
    monitoring = instance_config["run_monitoring"]
    assert monitoring["enabled"] is True
    # Without it a killed step's pool slot stays taken and every later run of the pool waits forever.
    assert monitoring["free_slots_after_run_end_seconds"] > 0
    helm = helm_values["dagsterDaemon"]["runMonitoring"]
    assert helm["enabled"] is True
    assert helm["pollIntervalSeconds"] == monitoring["poll_interval_seconds"]
    assert helm["startTimeoutSeconds"] == monitoring["start_timeout_seconds"]
