#!/usr/bin/env bash
# The Python half of setup: a supported interpreter, the pinned uv, and .venv from uv.lock. It relies on nothing
# but the interpreter: uv is run by its absolute path, never looked up on PATH after installing it, because where
# `pip install` puts a script depends on what manages that Python (pyenv's shims need a rehash, a system Python
# refuses installs, --user installs land in a user base that may not be on PATH).
# Usage: scripts/bootstrap.sh   (PYTHON=/path/to/python3.11 picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION="0.13.8"
# The minor versions uv.lock resolves for; pyproject.toml's requires-python says the same (tests/setup checks).
SUPPORTED=(3.11 3.12)

supported() {  # supported PYTHON: prints its sys.executable when it runs and is a supported version
  "$1" -c '
import sys
if "%d.%d" % sys.version_info[:2] in sys.argv[1:]:
    print(sys.executable)
else:
    sys.exit(1)' "${SUPPORTED[@]}" 2>/dev/null
}

if [ -n "${PYTHON:-}" ]; then
  candidates=("$PYTHON")
else
  candidates=()
  for v in "${SUPPORTED[@]}"; do candidates+=("python$v"); done
  candidates+=(python3)
fi
PY=""
for c in "${candidates[@]}"; do
  # the interpreter itself, not a shim (pyenv's): uv compares it with the one .venv was made from and rebuilds
  # the whole environment when they differ
  if PY="$(supported "$c")" && [ -n "$PY" ]; then break; fi
  PY=""
done
if [ -z "$PY" ]; then
  echo "setup: Python ${SUPPORTED[*]} is needed; looked for ${candidates[*]} and found none of those versions." \
    "Install one (pyenv install 3.11, or apt-get install python3.11) or name it: PYTHON=/path/to/python3.11 make demo" >&2
  exit 1
fi

uv_at_version() { [ "$("$@" --version 2>/dev/null | awk '{print $2}')" = "$UV_VERSION" ]; }

TOOLS=".nexgen/tools/uv-$UV_VERSION"
if command -v uv >/dev/null 2>&1 && uv_at_version uv; then
  UV=(uv)
elif uv_at_version "$TOOLS/bin/uv"; then
  UV=("$TOOLS/bin/uv")
else
  # into a folder of the project's own (--target also bypasses a system Python's externally-managed marker)
  "$PY" -m pip --version >/dev/null 2>&1 || {
    echo "setup: $PY has no pip to install uv $UV_VERSION with: install pip for it (apt-get install python3-pip)" \
      "or put uv $UV_VERSION on PATH" >&2
    exit 1
  }
  echo "setup: installing uv $UV_VERSION into $TOOLS"
  rm -rf "$TOOLS.tmp"
  PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --disable-pip-version-check --no-warn-script-location --target "$TOOLS.tmp" \
    "uv==$UV_VERSION"
  rm -rf "$TOOLS" && mv "$TOOLS.tmp" "$TOOLS"
  UV=("$TOOLS/bin/uv")
  uv_at_version "${UV[@]}" || { echo "setup: $TOOLS/bin/uv does not run as uv $UV_VERSION" >&2; exit 1; }
fi

# Bytecode compiled once here (a no-op when nothing changed): with PYTHONDONTWRITEBYTECODE set (as on CI), or a
# read-only install, every process would otherwise compile what it imports from source, each time
# (docs/performance.md).
"${UV[@]}" sync --frozen --extra dev --python "$PY" -q --compile-bytecode
.venv/bin/python -m compileall -q src include dags >/dev/null
echo "setup: .venv ready ($(.venv/bin/python --version), uv $UV_VERSION)"
