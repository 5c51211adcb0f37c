"""The driver's import path when spark-submit runs pip's PySpark (a local master): the installed, compiled
package first, spark-submit's zips last. Imports no PySpark itself."""

from __future__ import annotations

import sys
from pathlib import Path


def prefer_installed_pyspark() -> None:
    """Import PySpark from the installed package, not from the zip files spark-submit puts first on sys.path.

    spark-submit puts $SPARK_HOME/python/lib/pyspark.zip and py4j's zip first on the driver's path. Python does not
    cache compiled modules from a zip, so every driver would compile all of pyspark again. When SPARK_HOME is the
    installed pyspark package itself (pip's PySpark: the zips are inside it), its compiled modules are the same code;
    the zips go to the end of the path. With a Spark of its own (a cluster's distribution), nothing changes."""
    for entry in list(sys.path):
        lib = Path(entry).parent
        package = lib.parent.parent
        if (entry.endswith(".zip") and lib.name == "lib" and lib.parent.name == "python"
                and package.name == "pyspark" and (package / "__init__.py").is_file()
                and str(package.parent) in sys.path):
            sys.path.remove(entry)
            sys.path.append(entry)
