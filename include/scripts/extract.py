"""Entry point: discover new raw files and freeze them as a batch plan, outside Airflow.

    python include/scripts/extract.py --raw s3://nexgen-raw-data/ --output s3://nexgen-loading-data/ --state s.json
"""

import sys

from nexgen_etl.cli import main

if __name__ == "__main__":
    sys.exit(main(["step", "extract", *sys.argv[1:]]))
