"""The spark-submit entry script imports PySpark from the installed package, not from spark-submit's zips."""

from __future__ import annotations

import sys

from nexgen_etl.spark.local.pyspark_path import prefer_installed_pyspark
from nexgen_etl.spark.submit import transform_script


def zips(lib):
    lib.mkdir(parents=True)
    out = [lib / "pyspark.zip", lib / "py4j-0.10.9.7-src.zip"]
    for z in out:
        z.write_bytes(b"")
    return [str(z) for z in out]


def test_the_zips_of_the_installed_pyspark_go_last(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "pyspark").mkdir(parents=True)
    (site / "pyspark" / "__init__.py").write_text("")
    pz, py4j = zips(site / "pyspark" / "python" / "lib")
    fix = prefer_installed_pyspark
    monkeypatch.setattr(sys, "path", [pz, py4j, "/opt/app", str(site)])
    fix()
    assert sys.path == ["/opt/app", str(site), pz, py4j]


def test_a_spark_distributions_zips_stay_first(tmp_path, monkeypatch):
    # SPARK_HOME of its own (a cluster's Spark): its python/lib is not inside an installed pyspark package
    pz, py4j = zips(tmp_path / "spark" / "python" / "lib")
    fix = prefer_installed_pyspark
    monkeypatch.setattr(sys, "path", [pz, py4j, str(tmp_path / "site-packages")])
    fix()
    assert sys.path == [pz, py4j, str(tmp_path / "site-packages")]


def test_the_driver_imports_the_installed_pyspark(tmp_path):
    # what spark-submit does to the driver's path, then the entry script's fix: the compiled package is imported
    import subprocess

    import pyspark

    installed = pyspark.__file__
    lib = f"{installed.rsplit('/', 1)[0]}/python/lib"
    code = (f"import sys; sys.path[:0] = ['{lib}/pyspark.zip', '{lib}/py4j-0.10.9.7-src.zip']; "
            "from nexgen_etl.spark.local.pyspark_path import prefer_installed_pyspark; prefer_installed_pyspark(); "
            "import pyspark; print(pyspark.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == installed


def test_the_entry_script_fixes_the_path_before_importing_the_job():
    """Catches: the job (and with it pyspark) imported before prefer_installed_pyspark runs."""
    text = open(transform_script()).read()
    assert 0 < text.index("prefer_installed_pyspark()") < text.index("from nexgen_etl.spark.job import main")
