"""A class data sharing archive for the driver JVM of local runs (`python -m nexgen_etl.spark.local.class_archive`, run by setup).

A Spark driver loads some 18,000-23,000 classes (Spark, Hadoop, Parquet, Jackson, Scala) from about 250 jars, and
parses and verifies each of them at every start. JDK 17 can keep them in an archive file instead, mapped into
memory at start-up (`-XX:SharedArchiveFile`; JEP 350). The archive is made by running the transform once on
generated sample data with `-XX:ArchiveClassesAtExit`. It only fits the JVM and the class path it was made with,
so its name is a digest of both (the Java release, PySpark's jars folder, the jars on the driver's class path); a JVM
that finds it does not fit after all prints one warning and starts without it.

For local masters only: a cluster's driver and executors run elsewhere, with their own class path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nexgen_etl.core.settings import Settings

log = logging.getLogger("nexgen_etl")

ARCHIVE_DIR = "cds"
# the version of the training (_train): a new one names the archive anew, so that setup builds it again
TRAINING = "2: output on S3"


def java_home() -> Path | None:
    """The Java that spark-class starts: $JAVA_HOME's, else the first java on PATH."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"]).resolve()
    java = shutil.which("java")
    return Path(java).resolve().parents[1] if java else None


def fingerprint(class_path: list[Path]) -> str:
    """What the archive depends on: the JVM build, PySpark's jars (its path: the class path is absolute) and the
    jars on the driver's class path, in order (the JVM checks each jar's size and modification time)."""
    from nexgen_etl.spark.submit import pyspark_home

    home = java_home()
    release = home / "release" if home else None
    parts = [TRAINING, str(home), release.read_text() if release and release.exists() else "", pyspark_home()]
    for jar in class_path:
        st = jar.stat()
        parts += [str(jar), str(jar.resolve()), str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive_path(jars_dir: Path, class_path: list[Path]) -> Path:
    return Path(jars_dir) / ARCHIVE_DIR / f"driver-{fingerprint(class_path)}.jsa"


# JVM options from the environment that spark-class passes on: with a flight recording, this JDK 17 build crashed
# at start on a dynamic archive, in KlassFactory::check_shared_class_file_load_hook (the class file load hook that
# Java agents use too)
ENVIRONMENT_OPTIONS = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "SPARK_SUBMIT_OPTS")
UNSAFE_WITH_ARCHIVE = ("-agent", "-javaagent", "FlightRecord")


def archive_options(settings: Settings, class_path: list[Path], env: dict[str, str] | None = None) -> list[str]:
    """-XX:SharedArchiveFile for a local driver when the archive of this JVM and class path exists. Not when the
    settings bring their own driver class path (the archive's would not be a prefix of it) or JVM options (they
    replace the product's), nor with an agent or a flight recording in the environment's JVM options."""
    env = os.environ if env is None else env
    if {"spark.driver.extraClassPath", "spark.driver.extraJavaOptions"} & settings.spark_conf.keys():
        return []
    if any(u in env.get(name, "") for name in ENVIRONMENT_OPTIONS for u in UNSAFE_WITH_ARCHIVE):
        return []
    try:
        path = archive_path(settings.jars_dir, class_path)
    except OSError:
        return []
    return [f"-XX:SharedArchiveFile={path}"] if path.exists() else []


def build(settings: Settings | None = None, force: bool = False) -> Path:
    """Run two small local batches (the second reads the first's output back, as every later batch does) and
    archive the classes the second one's driver loaded. Idempotent; the archive appears whole or not at all."""
    from nexgen_etl.spark.submit import local_class_path

    settings = settings or Settings.from_env(spark_master="local[2]")
    target = archive_path(settings.jars_dir, local_class_path(settings))
    if target.exists() and not force:
        log.info("cds: %s is there", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.{os.getpid()}.part"
    try:
        with tempfile.TemporaryDirectory(prefix="nexgen-cds-") as tmp:
            _train(settings, Path(tmp), partial)
        if not partial.exists():
            raise RuntimeError(f"cds: the JVM wrote no archive at {partial}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    for old in target.parent.glob("driver-*.jsa"):  # archives of an earlier JVM or class path
        if old != target:
            old.unlink(missing_ok=True)
    log.info("cds: wrote %s (%.0f MB)", target, target.stat().st_size / 1e6)
    return target


TRAINING_BUCKET = "nexgen-cds-training"


def _train(settings: Settings, work: Path, archive: Path) -> None:
    """Two batches of generated sample files, read from a local folder and published to S3 on moto's server (as in
    the demo) when moto is installed, else to a local folder: with S3, their drivers load S3A's classes and the
    AWS SDK's too (some 2,000 more; a 100k-row batch through S3, 4 interleaved rounds: 20.7 -> 19.4 s median).
    The second batch's driver writes the archive."""
    from nexgen_etl.dev.demo import DEMO_KEY, DEMO_SECRET  # moto accepts any credentials: the demo's
    from nexgen_etl.dev.local_services import MotoServer, create_buckets, venv_bin
    from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret
    from nexgen_etl.core.storage import LocalStore, S3Store, s3_client

    if not Path(venv_bin("moto_server")).exists():  # e.g. the production image, without the dev dependencies
        out = work / "out"
        _train_batches(settings, work, archive, f"{out}/", lambda: LocalStore(out), None, settings.s3)
        return
    with MotoServer(log_path=work / "moto.log") as moto:
        s3 = S3Settings(endpoint_url=moto.url, path_style=True)
        credentials = AwsCredentials(DEMO_KEY, Secret(DEMO_SECRET))
        client = s3_client(s3, credentials)
        create_buckets(client, buckets=(TRAINING_BUCKET,))
        _train_batches(settings, work, archive, f"s3://{TRAINING_BUCKET}/",
                       lambda: S3Store(TRAINING_BUCKET, "", client), credentials, s3)


def _train_batches(settings: Settings, work: Path, archive: Path, output_url: str, out_store, credentials,
                   s3) -> None:
    """The two batches (_train): out_store() opens output_url; credentials go to spark-submit's environment."""
    from nexgen_etl.core.contract import load_contract
    from nexgen_etl.run.pipeline import Pipeline
    from nexgen_etl.dev.sample import SampleSpec, generate
    from nexgen_etl.core.state import FileStateStore
    from nexgen_etl.core.storage import LocalStore

    sample, raw = work / "sample", work / "raw"
    files = generate(sample, SampleSpec(stores=3, skus=10, days=10, seed=11))
    for n, (drop, dump) in enumerate(((files[:8], False), (files[8:], True))):
        for f in drop:
            dest = raw / f.relative_to(sample)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
        conf = dict(settings.spark_conf)
        if dump:
            conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.level=WARN -XX:ArchiveClassesAtExit={archive}"
        run = dataclasses.replace(settings, raw_url=f"{raw}/", output_url=output_url, s3=s3,
                                  state_url=str(work / "state.json"), spark_master="local[2]", spark_conf=conf)
        pipeline = Pipeline(settings=run, contract=load_contract(), raw=LocalStore(raw), out=out_store(),
                            state=FileStateStore(run.state_url))
        result = pipeline.run_once(credentials=credentials)
        if result.get("status") != "committed":
            raise RuntimeError(f"cds: training batch {n + 1} did not commit: {result}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nexgen_etl.spark.local.class_archive", description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="make the archive again even when it is there")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the training batches' steps are noise here
    t0 = time.monotonic()
    path = build(force=args.force)
    print(f"cds: {path} ({path.stat().st_size / 1e6:.0f} MB, {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
