"""Entry point: publish a transformed batch and then commit the watermark, outside Airflow.

    python include/scripts/load.py --batch BATCH_ID --output s3://nexgen-loading-data/ --state s.json
"""

import sys

from nexgen_etl.cli import main

if __name__ == "__main__":
    rc = main(["step", "load", *sys.argv[1:]])
    sys.exit(rc or main(["step", "commit", *sys.argv[1:]]))
