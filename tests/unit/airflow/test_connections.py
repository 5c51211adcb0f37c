"""A team's Spark conf in Airflow: the Variables nexgen_spark_conf and nexgen_spark_conf__<feed>, read by the task
(settings_from_airflow) through Airflow's own Variable lookup (AIRFLOW_VAR_* here: the unit tests' Airflow has no
metadata database), merged over NEXGEN_SPARK_CONF, each bad value failing in one line that names its Variable."""

from __future__ import annotations

import json

import pytest

from nexgen_etl.airflow.connections import settings_from_airflow
from nexgen_etl.airflow.feeds import Feed, default_feed
from nexgen_etl.run.preflight import SetupError

SENSORS = Feed(name="sensor_readings", contract_path="/contracts/sensor_readings.yaml")
SECRET = "variable-Secret-3f9a"


@pytest.fixture(autouse=True)
def _connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "login": "k", "password": "s"}))
    for name in ("NEXGEN_SPARK_CONF", "AIRFLOW_VAR_NEXGEN_SPARK_CONF", "AIRFLOW_VAR_NEXGEN_SPARK_CONF__SENSOR_READINGS"):
        monkeypatch.delenv(name, raising=False)


def test_the_variables_are_merged_over_the_environment_the_feeds_own_last(monkeypatch):
    """Key by key: NEXGEN_SPARK_CONF, then nexgen_spark_conf, then nexgen_spark_conf__<feed> (another feed's only).
    Catches: the Variables read by nothing (tried: settings_from_airflow without spark_conf=…), the environment
    winning over a Variable (tried: the merge reversed), and the feed's own Variable not read (tried: only
    nexgen_spark_conf read); the default feed's result shows the sensors feed's Variable applies to it alone."""
    monkeypatch.setenv("NEXGEN_SPARK_CONF", json.dumps({"spark.executor.cores": "2", "spark.executor.memory": "2g",
                                                        "spark.executor.instances": "2"}))
    assert settings_from_airflow(feed=SENSORS).spark_conf == {"spark.executor.cores": "2",
                                                              "spark.executor.memory": "2g",
                                                              "spark.executor.instances": "2"}
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_SPARK_CONF", json.dumps({"spark.executor.memory": "4g",
                                                                    "spark.executor.instances": "4"}))
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_SPARK_CONF__SENSOR_READINGS",
                       json.dumps({"spark.executor.instances": "8", "spark.kubernetes.namespace": "sensors"}))
    assert settings_from_airflow(feed=SENSORS).spark_conf == {"spark.executor.cores": "2",
                                                              "spark.executor.memory": "4g",
                                                              "spark.executor.instances": "8",
                                                              "spark.kubernetes.namespace": "sensors"}
    assert settings_from_airflow(feed=default_feed()).spark_conf == {"spark.executor.cores": "2",
                                                                     "spark.executor.memory": "4g",
                                                                     "spark.executor.instances": "4"}


def test_a_changed_variable_applies_to_the_next_task(monkeypatch):
    """Read when a task builds its settings, not once per process (nor at DAG parse time: tests/dags parses the
    DAG folder with Variable lookups made to fail)."""
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_SPARK_CONF", json.dumps({"spark.executor.memory": "4g"}))
    assert settings_from_airflow().spark_conf == {"spark.executor.memory": "4g"}
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_SPARK_CONF", json.dumps({"spark.executor.memory": "5g"}))
    assert settings_from_airflow().spark_conf == {"spark.executor.memory": "5g"}


@pytest.mark.parametrize(("variable", "value", "message"), [
    pytest.param("NEXGEN_SPARK_CONF", "{spark.executor.memory: 4g}", "not valid JSON", id="not-json"),
    pytest.param("NEXGEN_SPARK_CONF", '["spark.executor.memory"]', "must be a JSON object", id="not-object"),
    pytest.param("NEXGEN_SPARK_CONF", '{"spark.executor.instances": 4}', "must be a JSON string", id="number"),
    pytest.param("NEXGEN_SPARK_CONF", json.dumps({"spark.hadoop.fs.s3a.access.key": SECRET}),
                 "'spark.hadoop.fs.s3a.access.key' cannot be set here", id="access-key"),
    pytest.param("NEXGEN_SPARK_CONF", json.dumps({"spark.hadoop.fs.s3a.secret.key": SECRET}),
                 "'spark.hadoop.fs.s3a.secret.key' cannot be set here", id="secret-key"),
    pytest.param("NEXGEN_SPARK_CONF__SENSOR_READINGS", json.dumps({"spark.hadoop.fs.s3a.session.token": SECRET}),
                 "'spark.hadoop.fs.s3a.session.token' cannot be set here", id="feed-session-token"),
    pytest.param("NEXGEN_SPARK_CONF__SENSOR_READINGS", json.dumps({"spark.sql.session.timeZone": "CET"}),
                 "the product sets it", id="feed-time-zone"),
])
def test_a_bad_variable_fails_in_one_line_naming_it(monkeypatch, variable, value, message):
    """Catches: a bad value reported without the Variable's name (or as a JSON traceback), and a secret echoed
    into the task log by the error."""
    monkeypatch.setenv(f"AIRFLOW_VAR_{variable}", value)
    with pytest.raises(SetupError) as caught:
        settings_from_airflow(feed=SENSORS)
    line = str(caught.value)
    assert line.startswith(f"Airflow Variable {variable.lower()!r}: ") and message in line, line
    assert "\n" not in line and SECRET not in line
