#!/usr/bin/env bash
# One-time (and idempotent) setup on a fresh Debian machine: system packages with apt when they are missing (a JDK
# and Maven; with --with-browser, the tests' setup, also Chromium and its driver for the browser test and the
# PostgreSQL server for the scheduler test; with --with-postgres only the latter, for NEXGEN_AIRFLOW_DB=postgres
# make airflow), Python's side
# (scripts/bootstrap.sh: a supported interpreter, the pinned uv, .venv from uv.lock), the S3A jars (jars/lib, via
# Maven), and the driver JVM's class data sharing archive (jars/lib/cds: two small local batches once;
# nexgen_etl/spark/local/class_archive.py).
# Usage: scripts/setup.sh [--with-browser] [--with-postgres]   (PYTHON=/path/to/python3.11 picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

with_browser="" with_postgres=""
for arg in "$@"; do
  case "$arg" in
    --with-browser) with_browser=1 with_postgres=1 ;;
    --with-postgres) with_postgres=1 ;;
    *) echo "setup: unknown option $arg (known: --with-browser, --with-postgres)" >&2; exit 2 ;;
  esac
done

need_apt=()
# javac and jar build the project's two small jars (scripts/resolve_jars.sh); a JRE alone is not enough
{ command -v java && command -v javac && command -v jar; } >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v ps >/dev/null 2>&1 || need_apt+=(procps)
if [ -n "$with_browser" ]; then
  # the browser test of the Airflow UI drives Debian's headless Chromium through its own chromedriver
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
fi
if [ -n "$with_postgres" ]; then
  # the metadata DB of the scheduler test and of NEXGEN_AIRFLOW_DB=postgres: a throwaway cluster that
  # nexgen_etl/dev/postgres.py starts from these binaries (PG_MAJOR there; change both). The major version is the
  # pin: Debian's security updates replace the point release in the archive.
  [ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql-15)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "setup: these Debian packages are missing and this user is not root and has no sudo:" \
        "${need_apt[*]}; install them (apt-get install ${need_apt[*]}) and run again" >&2
      exit 1
    }
    SUDO=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || {
    echo "setup: missing ${need_apt[*]} and no apt-get to install them with: install a JDK 17, Maven and" \
      "procps with this system's package manager and run again" >&2
    exit 1
  }
  echo "setup: installing system packages: ${need_apt[*]}"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

scripts/bootstrap.sh
scripts/resolve_jars.sh .venv/bin/python
.venv/bin/python -m nexgen_etl.dev.class_archive
echo "setup: ready (.venv, jars/lib, jars/lib/cds)"
