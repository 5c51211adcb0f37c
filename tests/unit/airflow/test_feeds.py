"""Several feeds (nexgen_etl.airflow.feeds): one per contract file, each with its own Airflow names, and two feeds
that share one raw location through the task bodies (real Pipelines over local folders, built by airflow_pipeline
from the feed, the Connection and the Variables; a staged transform result in place of Spark)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from airflow.sdk.execution_time.context import OutletEventAccessors

from nexgen_etl.airflow import feeds, tasks
from nexgen_etl.core.contract import DEFAULT_CONTRACT, ContractError, load_contract
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.dev.sample import SampleSpec, generate
from tests.unit.airflow.conftest import as_xcom
from tests.unit.airflow.test_assets import History
from tests.unit.airflow.test_tasks import stage

ROOT = Path(__file__).resolve().parents[3]
SENSORS = Path(DEFAULT_CONTRACT).with_name("sensor_readings.yaml")


def contract_file(folder: Path, original: Path, **changes) -> Path:
    """A copy of a contract YAML with some top-level fields changed, as <name>.yaml in folder."""
    data = yaml.safe_load(original.read_text())
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_shipped_sales_feed_is_the_packaged_contract_but_for_its_schedule():
    """include/contracts/nexgen_sales.yaml is a copy (the deployment's feed); the CLI and the demo use the packaged
    one. Catches: a change to one of them only."""
    shipped = load_contract(ROOT / "include" / "contracts" / "nexgen_sales.yaml")
    packaged = load_contract(DEFAULT_CONTRACT)
    assert dataclasses.replace(shipped, schedule=packaged.schedule) == packaged
    assert [f.name for f in feeds.discover_feeds(ROOT / "include" / "contracts")] == ["nexgen_sales"]


def test_each_feed_gets_its_names_from_its_contract(tmp_path):
    """Catches: a second feed on the default feed's watermark Variable, lease owner, DAG id or Asset (two DAGs
    would share one state: the lease of one stops the other, and each one's watermark skips the other's files)."""
    folder = tmp_path / "contracts"
    contract_file(folder, DEFAULT_CONTRACT)
    contract_file(folder, SENSORS, schedule="*/15 * * * *")
    sales, sensors = feeds.discover_feeds(folder)
    assert (sales.name, sales.dag_id, sales.state_variable, sales.owner, sales.asset_name, sales.schedule) == (
        "nexgen_sales", "nexgen_etl_pipeline", "nexgen_etl_state", "airflow:nexgen_etl_pipeline",
        "nexgen://features/nexgen_sales", "@hourly")
    assert (sensors.dag_id, sensors.state_variable, sensors.owner, sensors.asset_name, sensors.schedule) == (
        "nexgen_etl__sensor_readings", "nexgen_etl_state__sensor_readings", "airflow:nexgen_etl__sensor_readings",
        "nexgen://features/sensor_readings", "*/15 * * * *")
    assert sensors.contract_path == str(folder / "sensor_readings.yaml")
    assert sales.output_url("s3://out/") == "s3://out/" and sensors.output_url("s3://out/") == "s3://out/sensor_readings/"


def test_without_contract_files_the_default_feed_runs_the_packaged_contract(tmp_path):
    assert feeds.discover_feeds(tmp_path / "none") == [feeds.Feed(name="nexgen_sales")]
    assert feeds.discover_feeds(tmp_path) == [feeds.Feed(name="nexgen_sales")]


@pytest.mark.parametrize(("name", "file", "message"), [
    ("sensor_readings", "sensors.yaml", "holds contract 'sensor_readings'; a feed's file is named after"),
    ("Sensor-Readings", "Sensor-Readings.yaml", "cannot name a feed"),
    ("features", "features.yaml", "cannot name a feed"),
])
def test_a_contract_that_cannot_name_a_feed_is_refused_naming_the_file(tmp_path, name, file, message):
    """Catches: two files declaring one feed (the file name is the feed), a name that is no DAG id or folder, and
    a feed whose output folder would be one of the default feed's datasets (features/, clean/, quarantine/)."""
    path = contract_file(tmp_path, SENSORS, name=name)
    path.rename(tmp_path / file)
    with pytest.raises(ContractError, match=message) as err:
        feeds.discover_feeds(tmp_path)
    assert file in str(err.value)


def test_a_bad_schedule_is_named():
    from nexgen_etl.core.contract import parse_contract

    data = yaml.safe_load(SENSORS.read_text())
    with pytest.raises(ContractError, match="schedule: must be a cron expression"):
        parse_contract({**data, "schedule": ""})
    assert parse_contract(data).schedule == "@hourly"


# -- two feeds, one raw location ---------------------------------------------------------------------------------

SENSOR_CSV = "ts;site;sensor_id;reading;battery;status\n2024-03-01T10:05:00Z;a;s1;21.5;90;ok\n"


@pytest.fixture()
def two_feeds(tmp_path, monkeypatch):
    """One raw folder with sales files under sales/ and sensor files under sensors/ (both *.csv), a sales and a
    sensors contract that pick their own prefix, the Variables and Connection the task bodies read, and the feeds'
    watermark Variables as files named after them."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    generate(raw, SampleSpec(stores=1, skus=2, days=3, seed=11, prefix="sales"))
    for day in ("01", "02"):
        (raw / "sensors" / day).mkdir(parents=True)
        (raw / "sensors" / day / f"readings_{day}.csv").write_text(SENSOR_CSV)
    out.mkdir()
    folder = tmp_path / "contracts"
    contract_file(folder, DEFAULT_CONTRACT, source={"prefix": "sales/", "patterns": ["*.csv"]})
    contract_file(folder, SENSORS, source={"prefix": "sensors/", "patterns": ["readings_*.csv"]})
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_RAW_URL", str(raw))
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_OUTPUT_URL", str(out))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "login": "k", "password": "s"}))
    for name in ("AIRFLOW_VAR_NEXGEN_CONTRACT", "NEXGEN_CONTRACT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tasks, "VariableStateStore", lambda key: FileStateStore(tmp_path / "variables" / key))
    return feeds.discover_feeds(folder), tmp_path


def test_settings_of_each_feed(two_feeds, monkeypatch):
    """The default feed reads the shared Variables (and nexgen_contract, when set); another feed writes under
    <nexgen_output_url>/<feed>/ unless its own Variables name other locations, with its own contract file."""
    from nexgen_etl.airflow.connections import settings_from_airflow

    (sales, sensors), tmp = two_feeds
    s = settings_from_airflow(feed=sales)
    assert (s.raw_url, s.output_url, s.contract_path) == (str(tmp / "raw"), str(tmp / "out"), sales.contract_path)
    s = settings_from_airflow(feed=sensors)
    assert (s.raw_url, s.output_url) == (str(tmp / "raw"), f"{tmp / 'out'}/sensor_readings/")
    assert s.contract_path == sensors.contract_path
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_OUTPUT_URL__SENSOR_READINGS", "s3://sensors-out/")
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_RAW_URL__SENSOR_READINGS", "s3://sensors-raw/")
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_CONTRACT", "/legacy/contract.yaml")
    s = settings_from_airflow(feed=sensors)
    assert (s.raw_url, s.output_url, s.contract_path) == ("s3://sensors-raw/", "s3://sensors-out/",
                                                           sensors.contract_path)
    assert settings_from_airflow(feed=sales).contract_path == "/legacy/contract.yaml"


def test_two_feeds_on_one_raw_location_never_take_each_others_files_and_both_publish(two_feeds):
    """Each feed's batch holds only the keys its contract's source matches, each publishes into its own output
    folder with its own catalog, commits its own watermark Variable and announces its own Asset. Catches: a feed
    listing with another's contract, the sensors' output at the root (one catalog for two feeds: each publish
    would replace the other's), and a shared watermark Variable."""
    (sales, sensors), tmp = two_feeds
    results = {}
    for feed in (sales, sensors):
        history = History(feed.asset())
        p = tasks.airflow_pipeline(feed=feed)
        assert p.contract.name == feed.name and p.owner == feed.owner
        discovered = as_xcom(tasks.discover({"operation": "run"}, pipeline=p))
        batch = as_xcom(tasks.extract(discovered, pipeline=p))
        stage(p, batch, periods=("2024-01-01",) if feed is sales else ("2024-03-01T10",))
        loaded = as_xcom(tasks.load(batch, pipeline=p))
        events = OutletEventAccessors()
        asset = feed.asset()
        out = tasks.commit_and_announce(batch, loaded, asset=asset, outlet_events=events, inlet_events=history,
                                        pipeline=p, feed=feed)
        results[feed.name] = {"keys": sorted(o["key"] for o in discovered["objects"]), "loaded": loaded,
                              "out": out, "extra": dict(events[asset].extra), "pipeline": p}
    assert results["nexgen_sales"]["keys"] == sorted(
        p.relative_to(tmp / "raw").as_posix() for p in (tmp / "raw" / "sales").rglob("*.csv"))
    assert len(results["nexgen_sales"]["keys"]) == 3
    assert results["sensor_readings"]["keys"] == ["sensors/01/readings_01.csv", "sensors/02/readings_02.csv"]
    for name, r in results.items():
        assert r["loaded"]["publish"] == "published" and r["out"]["state_version"] == 1
        assert r["extra"]["feed"] == name and r["out"]["asset"] == f"nexgen://features/{name}"
    assert results["nexgen_sales"]["pipeline"].out.url == f"{tmp / 'out'}/"
    assert results["sensor_readings"]["pipeline"].out.url == f"{tmp / 'out' / 'sensor_readings'}/"
    assert results["sensor_readings"]["extra"]["periods"]["features"] == ["2024-03-01T10"]
    assert (tmp / "out" / "_catalog.json").is_file() and (tmp / "out" / "sensor_readings" / "_catalog.json").is_file()
    variables = sorted(p.name for p in (tmp / "variables").iterdir() if not p.name.endswith(".lock"))
    assert variables == ["nexgen_etl_state", "nexgen_etl_state__sensor_readings"]
    # nothing of either is left for the other: both are done
    for feed in (sales, sensors):
        assert tasks.discover(None, pipeline=tasks.airflow_pipeline(feed=feed)) is False
