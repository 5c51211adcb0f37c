"""spark-submit entry point for the NexGen ETL transform (all logic lives in nexgen_etl.job)."""

import sys

from nexgen_etl.job import main

if __name__ == "__main__":
    sys.exit(main())
