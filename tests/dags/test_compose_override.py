"""`astro dev start` alone gives a working pipeline: docker-compose.override.yml adds the local S3 endpoint that
airflow_settings.yaml's aws_default names, with the product's buckets.

No Docker engine: the compose file is checked as data against what the Astro CLI generates, uv.lock and the
product's defaults, and the bucket-creation script and health check it gives the containers run here against a
real moto server of the locked version (a few seconds).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from nexgen_etl.core.settings import Settings
from nexgen_etl.dev.local_services import MotoServer

ROOT = Path(__file__).resolve().parents[2]

# What the Astro CLI's generated compose file defines for an Airflow 3 project (astronomer/astro-cli,
# airflow/include/airflow3/composeyml.go.tmpl, at ed93cc59e54def23d0c404c0a491583179177143): its services, and the
# one network they are all on. The CLI loads docker-compose.override.yml after it (airflow/docker.go,
# createDockerProject). Update both when the Dockerfile moves to a Runtime whose CLI template changes.
ASTRO_SERVICES = {"postgres", "db-migration", "scheduler", "dag-processor", "api-server", "triggerer"}
ASTRO_NETWORKS = {"airflow"}
# where the LocalExecutor of that file runs the tasks (and so the transform's local Spark)
TASK_SERVICE = "scheduler"

MOTO_IMAGE = re.compile(r"^(?:docker\.io/)?motoserver/moto:(?P<tag>[^:@\s]+)$")


# ---------------------------------------------------------------------------------------------------- parsing


def override() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.override.yml").read_text(encoding="utf-8"))


def services() -> dict[str, dict]:
    return override()["services"]


def added_services() -> dict[str, dict]:
    """The services the override brings (an image of their own), as opposed to changes to Astro's."""
    return {name: svc for name, svc in services().items() if "image" in svc or "build" in svc}


def s3_service() -> tuple[str, dict]:
    found = [(name, svc) for name, svc in added_services().items()
             if MOTO_IMAGE.match(svc["image"]) and "moto_server" in " ".join(svc.get("entrypoint") or [])]
    assert len(found) == 1, f"expected one service running moto_server from motoserver/moto, found {found}"
    return found[0]


def init_service() -> tuple[str, dict]:
    s3_name, _ = s3_service()
    found = [(name, svc) for name, svc in added_services().items() if "BUCKETS" in (svc.get("environment") or {})]
    assert len(found) == 1, f"expected one bucket-creating service (environment BUCKETS), found {[n for n, _ in found]}"
    assert found[0][0] != s3_name
    return found[0]


def image_of(name: str) -> str:
    return services()[name]["image"]


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` as the Astro CLI resolves them (from its own environment)."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: os.environ.get(m[1]) or m[2] or "", value)


def option(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{argv}: no {flag}"
    return argv[argv.index(flag) + 1]


def served_port() -> int:
    return int(option(s3_service()[1]["entrypoint"], "-p"))


def aws_endpoint() -> str:
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text(encoding="utf-8"))
    aws = {c["conn_id"]: c for c in settings["airflow"]["connections"]}["aws_default"]
    extra = aws["conn_extra"] if isinstance(aws["conn_extra"], dict) else json.loads(aws["conn_extra"])
    return extra["endpoint_url"]


def locked_version(name: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    versions = {p["version"] for p in lock["package"] if p["name"] == name}
    assert len(versions) == 1, f"uv.lock: {name} {versions}"
    return versions.pop()


def product_buckets() -> set[str]:
    """The buckets of the product's default locations (what the DAG uses when no Variable moves them)."""
    return {urlparse(Settings.raw_url).netloc, urlparse(Settings.output_url).netloc}


# ---------------------------------------------------------------------------------------------------- the endpoint


def test_airflow_settings_endpoint_is_the_s3_service_by_name_and_port():
    """Catches aws_default pointing anywhere else (host.docker.internal, localhost, the host port, a renamed
    service): the tasks would find no endpoint."""
    name, _ = s3_service()
    endpoint = urlparse(aws_endpoint())
    assert endpoint.scheme == "http"
    assert (endpoint.hostname, endpoint.port) == (name, served_port()), (
        f"aws_default endpoint_url {aws_endpoint()!r}: the compose service is {name!r} on port {served_port()}")
    # a host name without a dot: moto serves path-style requests for it (the product sends path-style whenever an
    # endpoint is set), and it resolves only on the compose network
    assert "." not in name


def test_s3_service_listens_on_every_interface_and_publishes_to_loopback_only():
    """Catches moto bound to the container's loopback (unreachable from the Airflow containers), and a host port
    open to the network or mapped to another container port."""
    _, svc = s3_service()
    assert option(svc["entrypoint"], "-H") == "0.0.0.0"
    for mapping in svc.get("ports") or []:
        host_ip, host_port, container_port = interpolate(str(mapping)).split(":")
        assert host_port.isdigit(), f"{mapping}: host port {host_port!r}"
        assert host_ip == "127.0.0.1", f"{mapping}: publish to the host's loopback only"
        assert int(container_port) == served_port(), f"{mapping}: moto listens on {served_port()}"


def test_moto_image_is_pinned_to_the_locked_moto():
    """Catches a floating tag (`latest`, none) and a tag other than the moto uv.lock pins for the tests."""
    _, svc = s3_service()
    tag = MOTO_IMAGE.match(svc["image"])["tag"]
    assert tag == locked_version("moto"), f"{svc['image']}: uv.lock pins moto {locked_version('moto')}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert f"moto[server]=={tag}" in pyproject["project"]["optional-dependencies"]["dev"]


@pytest.mark.parametrize("name", sorted(added_services()))
def test_every_added_image_has_an_exact_tag(name):
    """Catches an image without a tag or on `latest`: `astro dev start` would run whatever was pulled last."""
    image = added_services()[name]["image"]
    repo, sep, tag = image.rpartition(":")
    assert sep and "/" not in tag and tag != "latest", f"{name}: image {image!r} has no exact tag"
    assert re.fullmatch(r"\d+(\.\d+)*", tag), f"{name}: image {image!r}: pin a version tag"


# ---------------------------------------------------------------------------------------------------- compose wiring


@pytest.mark.parametrize("name", sorted(added_services()))
def test_added_services_join_astros_network(name):
    """Catches a service left on compose's `default` network (or a network Astro does not define): the Airflow
    containers, on `airflow` only, could not resolve it."""
    networks = added_services()[name].get("networks")
    assert networks, f"{name}: no networks: it would be on `default`, which no Airflow container joins"
    names = set(networks) if isinstance(networks, (list, dict)) else set()
    assert names and names <= ASTRO_NETWORKS, f"{name}: networks {sorted(names)}, Astro's are {sorted(ASTRO_NETWORKS)}"
    assert name not in ASTRO_SERVICES, f"{name}: would replace Astro's own service"


def test_only_astros_services_are_overridden_and_only_by_dependencies():
    """Catches an override of a service Astro's file does not define (an Airflow 2 name such as `webserver`
    would be a new service with no image, and no ordering), and one that replaces an Astro component's image
    or command."""
    overridden = {name: svc for name, svc in services().items() if name not in added_services()}
    assert overridden, "the override changes no Astro service: nothing waits for the buckets"
    assert set(overridden) <= ASTRO_SERVICES, f"{sorted(set(overridden) - ASTRO_SERVICES)} are not Astro services"
    for name, svc in overridden.items():
        assert set(svc) <= {"depends_on", "environment"}, f"{name}: overrides {sorted(svc)}"


def test_tasks_start_after_the_buckets_exist():
    """Catches the task-running service not waiting for the bucket creation (a first run racing it would fail
    with NoSuchBucket), and the creation not waiting for the server to answer."""
    s3_name, _ = s3_service()
    init_name, init = init_service()
    assert init["depends_on"] == {s3_name: {"condition": "service_healthy"}}
    waits = services().get(TASK_SERVICE, {}).get("depends_on") or {}
    assert waits.get(init_name) == {"condition": "service_completed_successfully"}, (
        f"{TASK_SERVICE} must wait for {init_name} to complete")
    assert "healthcheck" in s3_service()[1]


# ---------------------------------------------------------------------------------------------------- run for real


@pytest.fixture(scope="module")
def moto():
    """A fresh moto server (not the session's): this test asserts which buckets exist on it."""
    import moto as moto_package

    assert moto_package.__version__ == locked_version("moto"), "the .venv's moto differs from uv.lock: make setup"
    with MotoServer() as server:
        yield server


def container_run(svc: dict, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    """The service's entrypoint + command, as the container would run it (`python` is this interpreter)."""
    argv = [*svc["entrypoint"], *svc.get("command", [])]
    assert argv[0] == "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({k: str(v) for k, v in (svc.get("environment") or {}).items()}, **env_extra)
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=60)


def test_init_creates_the_product_buckets(moto):
    """Runs the init service's script against moto, twice (a second start finds the buckets there): catches a
    bucket of the product's defaults missing from BUCKETS (or the product's default bucket names changing,
    Settings.raw_url / output_url), and a script that does not create them all."""
    import boto3

    name, svc = init_service()
    s3_name, _ = s3_service()
    assert urlparse(svc["environment"]["S3_ENDPOINT"]) == urlparse(aws_endpoint()), (
        f"{name} creates the buckets on {svc['environment']['S3_ENDPOINT']}, aws_default uses {aws_endpoint()}")
    assert "local" in svc["environment"]["AWS_ACCESS_KEY_ID"], "keep the visibly local-only placeholder keys"
    assert image_of(name) == image_of(s3_name), "the init runs in moto's image, which has boto3"

    for attempt in range(2):  # twice: a second start finds the buckets there
        proc = container_run(svc, {"S3_ENDPOINT": moto.url})
        assert proc.returncode == 0, f"try {attempt}: {proc.stderr[-2000:]}"
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                          aws_access_key_id="local-dev-access-key", aws_secret_access_key="local-dev-secret-key")
    existing = {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert product_buckets() <= existing, f"missing {sorted(product_buckets() - existing)}"


def test_healthcheck_passes_against_moto(moto):
    """Runs the s3 service's health check against moto of the locked version: catches a probe of a path or port
    moto does not serve (the service would never be healthy and the scheduler never start)."""
    _, svc = s3_service()
    test = svc["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    inside = f"127.0.0.1:{served_port()}"
    script = option(test, "-c")
    assert script.count(inside) == 1, f"the health check must probe {inside}"
    proc = subprocess.run([sys.executable, "-c", script.replace(inside, urlparse(moto.url).netloc)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
