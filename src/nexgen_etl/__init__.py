"""NexGen ETL: raw sales CSVs in S3 → PySpark features → partitioned Parquet, orchestrated by Airflow 3."""

__version__ = "0.1.0"
