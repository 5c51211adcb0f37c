"""Makes the class data sharing archive of local drivers (nexgen_etl.spark.local.class_archive): two small local
batches on generated sample data, the second one's driver writing the archive (`python -m nexgen_etl.dev.class_archive`,
run by setup and by the Dockerfile).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nexgen_etl.core.settings import Settings
from nexgen_etl.spark.local.class_archive import archive_path
from nexgen_etl.spark.local.jvm import local_class_path

log = logging.getLogger("nexgen_etl")

TRAINING_BUCKET = "nexgen-cds-training"


def build(settings: Settings | None = None, force: bool = False) -> Path:
    """Run two small local batches (the second reads the first's output back, as every later batch does) and
    archive the classes the second one's driver loaded. Idempotent; the archive appears whole or not at all."""
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


def _train(settings: Settings, work: Path, archive: Path) -> None:
    """Two batches of generated sample files, read from a local folder and published to S3 on moto's server (as in
    the demo) when moto is installed, else to a local folder: with S3, their drivers load S3A's classes and the
    AWS SDK's too (what that saves: docs/performance.md). The second batch's driver writes the archive."""
    from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret
    from nexgen_etl.core.storage import LocalStore, S3Store, s3_client
    from nexgen_etl.dev.demo import DEMO_KEY, DEMO_SECRET  # moto accepts any credentials: the demo's
    from nexgen_etl.dev.local_services import MotoServer, create_buckets, venv_bin

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
    from nexgen_etl.core.state import FileStateStore
    from nexgen_etl.core.storage import LocalStore
    from nexgen_etl.dev.sample import SampleSpec, generate
    from nexgen_etl.run.pipeline import Pipeline

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

    ap = argparse.ArgumentParser(prog="python -m nexgen_etl.dev.class_archive", description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="make the archive again even when it is there")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the training batches' steps are noise here
    t0 = time.monotonic()
    path = build(force=args.force)
    print(f"cds: {path} ({path.stat().st_size / 1e6:.0f} MB, {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
