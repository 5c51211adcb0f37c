#!/usr/bin/env bash
# Resolve hadoop-aws at exactly the Hadoop version of the hadoop-client jars inside the installed PySpark,
# plus the AWS SDK artifacts that version declares, from Maven Central with Maven, into jars/lib (git-ignored);
# then compile jars/src (the local file system without chmod processes) and jars/scala (the feature window kernel)
# against that PySpark's jars.
# Cached: does nothing when jars/lib already matches. Usage: scripts/resolve_jars.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
OUT="${NEXGEN_JARS_DIR:-jars/lib}"
case "$OUT" in /*) ;; *) OUT="$(pwd)/$OUT" ;; esac
PYSPARK_JARS="$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
shopt -s nullglob
API=("$PYSPARK_JARS"/hadoop-client-api-*.jar)
if [ "${#API[@]}" -ne 1 ]; then
  echo "jars: expected exactly one hadoop-client-api jar in $PYSPARK_JARS, found ${#API[@]}" >&2
  exit 1
fi
HADOOP_VERSION="${API[0]##*/hadoop-client-api-}"
HADOOP_VERSION="${HADOOP_VERSION%.jar}"
STAMP="$OUT/.hadoop-version"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HADOOP_VERSION" ] && ls "$OUT"/hadoop-aws-"$HADOOP_VERSION".jar >/dev/null 2>&1; then
  echo "jars: hadoop-aws $HADOOP_VERSION already in $OUT"
else
  command -v mvn >/dev/null || { echo "jars: Maven (mvn) is needed: run scripts/setup.sh" >&2; exit 1; }
  rm -rf "$OUT" && mkdir -p "$OUT"
  echo "jars: resolving org.apache.hadoop:hadoop-aws:$HADOOP_VERSION and its AWS SDK with Maven"
  mvn -B -q -f jars/pom.xml dependency:copy-dependencies \
    -Dhadoop.version="$HADOOP_VERSION" -DincludeScope=runtime -DoutputDirectory="$OUT"
  echo "$HADOOP_VERSION" > "$STAMP"
  ls -1 "$OUT"
fi

CLASSES="$(mktemp -d)"
trap 'rm -rf "$CLASSES"' EXIT

# nexgen-localfs.jar, rebuilt when a source is newer (or PySpark's Hadoop changed, which emptied $OUT above)
LOCALFS="$OUT/nexgen-localfs.jar"
if [ ! -f "$LOCALFS" ] || [ -n "$(find jars/src -name '*.java' -newer "$LOCALFS")" ]; then
  command -v javac >/dev/null || { echo "jars: javac (a JDK) is needed: run scripts/setup.sh" >&2; exit 1; }
  javac -nowarn --release 11 -cp "$PYSPARK_JARS/*" -d "$CLASSES/localfs" $(find jars/src -name '*.java' | sort)
  jar cf "$LOCALFS.tmp" -C "$CLASSES/localfs" . && mv "$LOCALFS.tmp" "$LOCALFS"
  echo "jars: built $LOCALFS"
fi

# nexgen-spark.jar: the feature window kernel (jars/scala), compiled by the Scala compiler that PySpark ships in
# its jars against that PySpark's Spark; rebuilt when a source is newer or PySpark's version changed
KERNEL="$OUT/nexgen-spark.jar"
SPARK_VERSION="$("$PY" -c 'import pyspark; print(pyspark.__version__)')"
if [ ! -f "$KERNEL" ] || [ "$(cat "$KERNEL.spark-version" 2>/dev/null)" != "$SPARK_VERSION" ] \
    || [ -n "$(find jars/scala -name '*.scala' -newer "$KERNEL")" ]; then
  mkdir -p "$CLASSES/kernel"
  java -cp "$PYSPARK_JARS/*" scala.tools.nsc.Main -usejavacp -deprecation -Werror -d "$CLASSES/kernel" \
    $(find jars/scala -name '*.scala' | sort)
  jar cf "$KERNEL.tmp" -C "$CLASSES/kernel" . && mv "$KERNEL.tmp" "$KERNEL"
  echo "$SPARK_VERSION" > "$KERNEL.spark-version"
  echo "jars: built $KERNEL (Spark $SPARK_VERSION)"
fi

# unsigned/: copies of PySpark's signed jars (Janino's two: they compile Spark's generated code) without their
# signature files, for a local driver's class path ahead of PySpark's own. The JVM keeps no class of a signed jar
# in the class data sharing archive (nexgen_etl/spark/local/class_archive.py), so Janino's ~570 classes were read, checked against
# their signatures and verified at every start. Made once per jar (the archive's name follows their file times).
"$PY" - "$PYSPARK_JARS" "$OUT/unsigned" <<'PYEOF'
import re, sys, zipfile
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
signature = re.compile(r"META-INF/[^/]+\.(SF|RSA|DSA|EC)$", re.I)
signed = []
for jar in sorted(src.glob("*.jar")):
    with zipfile.ZipFile(jar) as z:
        if any(signature.match(n) for n in z.namelist()):
            signed.append(jar)
for jar in signed:
    copy = out / jar.name
    if copy.exists() and copy.stat().st_mtime >= jar.stat().st_mtime:
        continue
    out.mkdir(parents=True, exist_ok=True)
    tmp = copy.with_suffix(".tmp")
    with zipfile.ZipFile(jar) as z, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as w:
        for info in z.infolist():
            if not signature.match(info.filename):
                w.writestr(info, z.read(info))
    tmp.replace(copy)
    print(f"jars: unsigned copy of {jar.name} in {out}")
for stale in out.glob("*.jar") if out.is_dir() else []:
    if stale.name not in {j.name for j in signed}:
        stale.unlink()
PYEOF
