"""Entry point: discover and freeze a batch outside Airflow (`python include/scripts/extract.py`)."""

import sys

from nexgen_etl.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
