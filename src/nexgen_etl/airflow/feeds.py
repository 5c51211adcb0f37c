"""The feeds: one DAG per data contract in include/contracts/, and the Airflow names each feed owns.

A feed is a contract file: `include/contracts/<feed>.yaml` holds the contract named `<feed>`. Everything else is
derived from that name, at DAG parse time, from the files alone (no Variable, Connection, database or network):

| | the default feed (`nexgen_sales`) | any other feed `<feed>` |
|---|---|---|
| DAG id | `nexgen_etl_pipeline` | `nexgen_etl__<feed>` |
| watermark Variable | `nexgen_etl_state` | `nexgen_etl_state__<feed>` |
| raw location | Variable `nexgen_raw_url` | `nexgen_raw_url__<feed>`, else `nexgen_raw_url` |
| output location | Variable `nexgen_output_url` | `nexgen_output_url__<feed>`, else `<nexgen_output_url>/<feed>/` |
| team's Spark conf | Variable `nexgen_spark_conf` | `nexgen_spark_conf__<feed>` over `nexgen_spark_conf` |
| lease owner | `airflow:nexgen_etl_pipeline` | `airflow:nexgen_etl__<feed>` |
| Asset | `nexgen://features/nexgen_sales` | `nexgen://features/<feed>` |
| schedule | the contract's `schedule` (default `@hourly`) | same |

Feeds that share a raw location are kept apart by their contracts' `source` (prefix, patterns): a key is a feed's
only when its contract's source matches it.
The default feed keeps the names the single-feed DAG had, so its watermark, runs and connections carry over.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nexgen_etl.core.contract import DEFAULT_CONTRACT, DEFAULT_SCHEDULE, ContractError, load_contract
from nexgen_etl.core.layout import DATASETS

DEFAULT_FEED = "nexgen_sales"
DEFAULT_DAG_ID = "nexgen_etl_pipeline"
ASSET_PREFIX = "nexgen://features/"
CONTRACTS_ENV = "NEXGEN_CONTRACTS_DIR"  # where the feeds' contracts are; default: include/contracts of the project
# a feed's name becomes a DAG id, Variable names and an output folder: keep it to what all three accept
FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class Feed:
    """One feed: a contract file and the Airflow names derived from its name."""

    name: str
    contract_path: str | None = None  # None: the contract packaged with nexgen_etl
    schedule: str = DEFAULT_SCHEDULE

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_FEED

    @property
    def dag_id(self) -> str:
        return DEFAULT_DAG_ID if self.is_default else f"nexgen_etl__{self.name}"

    def variable(self, base: str) -> str:
        """The feed's own name for a Variable (`base` itself for the default feed)."""
        return base if self.is_default else f"{base}__{self.name}"

    @property
    def state_variable(self) -> str:
        return self.variable("nexgen_etl_state")

    @property
    def owner(self) -> str:
        """The lease owner of the feed's runs: one per DAG, max_active_runs=1 orders its runs."""
        return f"airflow:{self.dag_id}"

    @property
    def asset_name(self) -> str:
        return f"{ASSET_PREFIX}{self.name}"

    def output_url(self, shared_output_url: str) -> str:
        """The feed's output location under the shared one (the default feed's is the shared one itself)."""
        return shared_output_url if self.is_default else join_url(shared_output_url, f"{self.name}/")

    def asset(self):
        """The feed's Asset, as the commit task's outlet: named `nexgen://features/<feed>`, its URI the features
        location of the output the environment gives (`NEXGEN_OUTPUT_URL`, else s3://nexgen-loading-data/).

        An Asset is fixed at parse time, when no Variable may be read: where a Variable moves the output, the
        event's extra `output_url` (taken at run time) is where the features are."""
        from airflow.sdk import Asset

        from nexgen_etl.core.settings import Settings

        return Asset(name=self.asset_name, uri=join_url(self.output_url(Settings.from_env().output_url), "features"))


def default_feed() -> Feed:
    """The default feed on the contract packaged with nexgen_etl (what a task body uses when given no feed)."""
    return Feed(name=DEFAULT_FEED)


def join_url(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel


def contracts_dir(dags_folder: str | Path | None = None) -> Path:
    """Where the feeds' contracts are: `NEXGEN_CONTRACTS_DIR`, else include/contracts beside the DAGs folder (an
    Astro project's layout, /usr/local/airflow/include/contracts in its image), else the project's."""
    if os.environ.get(CONTRACTS_ENV):
        return Path(os.environ[CONTRACTS_ENV])
    if dags_folder is not None:
        return Path(dags_folder).resolve().parent / "include" / "contracts"
    from nexgen_etl.core.settings import PROJECT_ROOT

    return PROJECT_ROOT / "include" / "contracts"


def feed_from_file(path: Path) -> Feed:
    """The feed of one contract file; ContractError naming the file when it is not one."""
    contract = load_contract(path)
    if contract.name != path.stem:
        raise ContractError(f"{path}: holds contract {contract.name!r}; a feed's file is named after its contract "
                            f"({contract.name}.yaml)")
    if not FEED_NAME.match(contract.name) or contract.name in DATASETS:
        raise ContractError(f"{path}: {contract.name!r} cannot name a feed (a DAG id, Variables and an output "
                            f"folder): use lower-case letters, digits and '_', and none of {list(DATASETS)}")
    return Feed(name=contract.name, contract_path=str(path), schedule=contract.schedule)


def discover_feeds(folder: str | Path) -> list[Feed]:
    """One feed per `*.yaml` in the folder (sorted by name). Without the folder, or with no contract in it, the
    default feed on the contract packaged with nexgen_etl."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        return [Feed(name=DEFAULT_FEED, schedule=load_contract(DEFAULT_CONTRACT).schedule)]
    return [feed_from_file(p) for p in files]
