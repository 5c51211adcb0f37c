"""Entry point: publish a transformed batch and commit the watermark outside Airflow."""

import sys

from nexgen_etl.cli import main

if __name__ == "__main__":
    sys.exit(main(["status", *sys.argv[1:]]))
