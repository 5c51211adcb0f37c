"""scripts/bootstrap.sh on a fresh machine: no uv on PATH, a fresh HOME, and an interpreter whose scripts folder is
not on PATH (a throwaway virtualenv, as a pyenv version before `pyenv rehash` or a conda env that is not activated).

The project is copied to a temporary folder so that the real checkout's .venv and .nexgen/ are not reused; uv's
package cache is (so no wheel is downloaded twice), and the jars and the class archive are not built here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"
UV_VERSION = re.search(r'^UV_VERSION="([^"]+)"', BOOTSTRAP.read_text(), re.M).group(1)
SUPPORTED = re.search(r"^SUPPORTED=\(([^)]*)\)", BOOTSTRAP.read_text(), re.M).group(1).split()


def _uv_cache() -> str:
    """The cache the real setup filled (the test's HOME is fresh, so uv would otherwise start an empty one)."""
    out = subprocess.run([".venv/bin/python", "-c", "print(1)"], cwd=ROOT, capture_output=True)
    assert out.returncode == 0
    found = shutil.which("uv") or str(ROOT / ".nexgen" / "tools" / f"uv-{UV_VERSION}" / "bin" / "uv")
    return subprocess.run([found, "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()


def _tool_dir(tmp_path: Path, *tools: str) -> Path:
    """A PATH folder holding only the named system tools (so no uv, pyenv shim or python is found by accident)."""
    bin_dir = tmp_path / "sysbin"
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(tool, path="/usr/local/bin:/usr/bin:/bin")
        assert real, f"{tool} is needed on this machine to run the bootstrap test"
        (bin_dir / tool).symlink_to(real)
    return bin_dir


def _network_env() -> dict[str, str]:
    """The machine's certificate and proxy settings, which a fresh user's shell has too."""
    pattern = re.compile(r"^(SSL_CERT_|REQUESTS_CA_BUNDLE$|CURL_CA_BUNDLE$|PIP_|UV_|HTTPS?_PROXY$|NO_PROXY$)", re.I)
    return {k: v for k, v in os.environ.items() if pattern.match(k)}


def _copy_project(dest: Path) -> Path:
    dest.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("src", "include", "dags", "scripts"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _run(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(project / "scripts" / "bootstrap.sh")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_fresh_machine_reaches_uv_and_venv(tmp_path: Path) -> None:
    """A fresh machine reaches a working uv and .venv.

    Catches: finding the freshly installed uv through PATH or the user base (the script before this test: `pip
    install uv` put it in pyenv's version folder, unseen until `pyenv rehash`, and setup died with `~/.local/bin/uv:
    No such file or directory`, exit 127); trusting a uv on PATH at another version; installing into the user's
    interpreter.
    """
    interpreter = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    throwaway = tmp_path / "py"
    subprocess.run([str(interpreter), "-m", "venv", str(throwaway)], check=True)
    project = _copy_project(tmp_path / "project")
    home = tmp_path / "home"
    home.mkdir()
    # a uv on PATH at another version, which must be left alone (it only answers --version)
    sysbin = _tool_dir(tmp_path, "bash", "env", "dirname", "awk", "rm", "mv", "cat")
    calls = tmp_path / "old-uv-calls"
    (sysbin / "uv").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "uv 0.1.0"\n')
    (sysbin / "uv").chmod(0o755)
    env = {
        **_network_env(),
        "HOME": str(home),
        "PATH": str(sysbin),
        "PYTHON": str(throwaway / "bin" / "python"),
        "UV_CACHE_DIR": _uv_cache(),
        "PIP_ROOT_USER_ACTION": "ignore",
    }
    assert not (throwaway / "bin" / "uv").exists()

    first = _run(project, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"installing uv {UV_VERSION}" in first.stdout
    uv = project / ".nexgen" / "tools" / f"uv-{UV_VERSION}" / "bin" / "uv"
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.split()[:2] == ["uv", UV_VERSION]
    imported = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c", "import nexgen_etl, pyspark, airflow.sdk, moto; print('ok')"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert imported.stdout.strip() == "ok", imported.stderr
    assert calls.read_text().split() == ["--version"], "the uv on PATH at another version was used"
    assert not (throwaway / "bin" / "uv").exists(), "uv was installed into the user's interpreter"

    # a second run finds the uv it installed and does not install it again
    second = _run(project, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "installing uv" not in second.stdout


def test_no_supported_python_says_so_in_one_line(tmp_path: Path) -> None:
    """Without Python 3.11/3.12 setup stops with one line naming what it looked for and how to get it.

    Catches: a traceback or an assertion from inside Python instead (the script before this test printed
    `AssertionError: Python 3.11 is needed` under a traceback), and a message that does not say how to name one.
    """
    sysbin = _tool_dir(tmp_path, "bash", "dirname", "awk", "cat")
    old = sysbin / "python3"  # an interpreter of an unsupported version
    old.write_text("#!/bin/sh\nexit 1\n")
    old.chmod(0o755)
    env = {"HOME": str(tmp_path), "PATH": str(sysbin)}
    result = _run(ROOT, env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for expected in ("Python 3.11 3.12 is needed", "python3.11", "python3.12", "python3", "pyenv install",
                     "apt-get install", "PYTHON=/path/to/python3.11 make demo"):
        assert expected in lines[0]
    named = _run(ROOT, {**env, "PYTHON": str(old)})
    assert named.returncode == 1 and f"looked for {old} " in named.stderr


def test_supported_versions_match_pyproject() -> None:
    """The versions the bootstrap accepts are exactly the minor versions pyproject.toml's requires-python admits.

    Catches: accepting 3.13 (which the lock has no resolution for), or rejecting 3.12 (which it has).
    """
    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    admitted = [f"3.{minor}" for minor in range(8, 20) if f"3.{minor}.0" in spec or f"3.{minor}.99" in spec]
    assert SUPPORTED == admitted
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert SpecifierSet(lock["requires-python"].replace(" ", "")) == spec


@pytest.mark.parametrize("name", ["setup.sh", "bootstrap.sh", "resolve_jars.sh"])
def test_scripts_never_look_up_what_they_install_on_path(name: str) -> None:
    """After installing uv the scripts run it by its path, and never fall back to a guessed user base.

    Catches: `command -v uv || echo "$(python -m site --user-base)/bin/uv"`, the lookup that failed under pyenv.
    """
    text = (ROOT / "scripts" / name).read_text()
    assert "--user-base" not in text and "site --user" not in text
    assert os.access(ROOT / "scripts" / name, os.X_OK)
