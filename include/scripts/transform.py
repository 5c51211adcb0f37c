"""spark-submit entry point for the NexGen ETL transform (all logic lives in nexgen_etl.spark.job)."""

import sys

if __name__ == "__main__":
    # before anything imports pyspark: the installed package, not spark-submit's zips (spark.local.pyspark_path)
    from nexgen_etl.spark.local.pyspark_path import prefer_installed_pyspark

    prefer_installed_pyspark()

    from nexgen_etl.spark.job import main

    sys.exit(main())
