"""Airflow for the unit tests of nexgen_etl.airflow, in this process: a throwaway AIRFLOW_HOME and a metadata database
that does not exist, so Connections and Variables come from AIRFLOW_CONN_* / AIRFLOW_VAR_* only (any lookup that
reached the database would fail), and a small batch frozen by the task bodies over local folders."""

from __future__ import annotations

import json

import pytest

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import LocalStore
from nexgen_etl.dev.sample import SampleSpec, generate
from nexgen_etl.run.pipeline import Pipeline


@pytest.fixture(scope="session", autouse=True)
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(home))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/missing/none.db")
        yield home


@pytest.fixture()
def local_pipeline(tmp_path) -> Pipeline:
    """The real Pipeline over local folders (raw: three days of sample CSVs) with its state in a file."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    generate(raw, SampleSpec(stores=1, skus=2, days=3, seed=11))
    out.mkdir()
    return Pipeline(settings=Settings(raw_url=str(raw), output_url=str(out)), contract=load_contract(),
                    raw=LocalStore(raw), out=LocalStore(out), state=FileStateStore(tmp_path / "state.json"),
                    owner="airflow:test")


def as_xcom(value):
    """What a task's return value looks like to the next task: JSON there and back (fails if not serialisable)."""
    return json.loads(json.dumps(value))
