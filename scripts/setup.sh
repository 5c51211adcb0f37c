#!/usr/bin/env bash
# One-time (and idempotent) setup on a fresh Debian machine: system packages (JDK, Maven, Chromium) with apt when they are
# missing, uv, the pinned virtualenv (.venv from uv.lock), the S3A jars (jars/lib, via Maven), and the driver JVM's
# class data sharing archive (jars/lib/cds: two small local batches once, about 90 s; nexgen_etl/cds.py).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION="0.13.8"

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v ps >/dev/null 2>&1 || need_apt+=(procps)
# the browser test of the Airflow UI drives Debian's headless Chromium through its own chromedriver
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, found {sys.version}"'
# the interpreter itself, not a shim (pyenv's): uv compares it with the one .venv was made from, and rebuilt the
# whole environment (207 packages) on every run when given the shim
PY="$("$PY" -c 'import sys; print(sys.executable)')"
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "setup: installing uv $UV_VERSION"
  "$PY" -m pip install -q "uv==$UV_VERSION"
fi
UV="$(command -v uv || echo "$("$PY" -m site --user-base)/bin/uv")"
# Bytecode compiled once here (a no-op when nothing changed): with PYTHONDONTWRITEBYTECODE set (as on CI), or a
# read-only install, every process would otherwise compile what it imports from source, each time: importing
# Airflow took 6.3 s instead of 2.7 s, and a 100k-row batch's processes spent ~3 CPU s on it (docs/performance.md)
"$UV" sync --frozen --extra dev --python "$PY" -q --compile-bytecode
.venv/bin/python -m compileall -q src include dags >/dev/null
scripts/resolve_jars.sh .venv/bin/python
.venv/bin/python -m nexgen_etl.cds
echo "setup: ready (.venv, jars/lib, jars/lib/cds)"
