"""Secrets never show themselves: every way a value is commonly turned into text either masks it or fails. A team's
Spark conf (NEXGEN_SPARK_CONF, the Airflow Variables) is a JSON object of strings that sets no secret and nothing the
product controls; NEXGEN_SHIP_S3A_JARS is auto, true or false."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest

from nexgen_etl.core.settings import AwsCredentials, Secret, Settings, ship_s3a_jars_from, spark_conf_from_json

VALUE = "nexgen-canary-7d1e"


@pytest.mark.parametrize("render", [
    pytest.param(repr, id="repr"),
    pytest.param(str, id="str"),
    pytest.param(lambda s: f"{s}", id="f-string"),
    pytest.param(lambda s: f"{s!s:>30}", id="f-string-spec"),
    pytest.param(lambda s: "%s" % s, id="percent-s"),
    pytest.param(lambda s: "{}".format(s), id="format"),
    pytest.param(lambda s: repr(AwsCredentials("AKIDEXAMPLE", s)), id="credentials-repr"),
])
def test_rendering_masks(render) -> None:
    """Catches: a Secret that shows its value in any of these (a str subclass leaked through json and +)."""
    assert VALUE not in render(Secret(VALUE))


@pytest.mark.parametrize("use", [
    pytest.param(lambda s: json.dumps({"k": s}), id="json.dumps"),
    pytest.param(lambda s: "x" + s, id="str-plus"),
    pytest.param(lambda s: s + "x", id="plus-str"),
    pytest.param(lambda s: "%d" % s, id="percent-d"),
    pytest.param(lambda s: pickle.dumps(s), id="pickle"),
    pytest.param(lambda s: copy.deepcopy(s), id="deepcopy"),
    pytest.param(lambda s: "".join([s]), id="join"),
])
def test_serialising_or_concatenating_fails(use) -> None:
    """Catches: `Secret(str)`, which these treated as the plain value (tried: all but percent-d passed it on)."""
    with pytest.raises(TypeError):
        use(Secret(VALUE))


def test_logging_masks(caplog) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("nexgen_etl.test").info("key %s %r", Secret(VALUE), Secret(VALUE))
    assert VALUE not in caplog.text and "***" in caplog.text


def test_reveal_and_environment() -> None:
    creds = AwsCredentials("AKIDEXAMPLE", Secret(VALUE), Secret("tok"))
    assert creds.as_env() == {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": VALUE,
                              "AWS_SESSION_TOKEN": "tok"}
    assert Secret(VALUE) == Secret(VALUE) and Secret(VALUE) != VALUE and not Secret("")
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


# -- a team's Spark conf ---------------------------------------------------------------------------------------------

def test_a_json_object_of_spark_properties_with_string_values_is_the_conf():
    text = '{"spark.executor.memory": "4g", "spark.kubernetes.authenticate.driver.oauthTokenFile": "/var/run/t"}'
    assert spark_conf_from_json(text, "X") == {"spark.executor.memory": "4g",
                                               "spark.kubernetes.authenticate.driver.oauthTokenFile": "/var/run/t"}
    assert spark_conf_from_json(None, "X") == {} == spark_conf_from_json("  ", "X")


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("{oops", r"not valid JSON \(Expecting property name", id="not-json"),
    pytest.param('["spark.executor.memory", "4g"]', "must be a JSON object .* not a JSON array", id="array"),
    pytest.param('"spark.executor.memory=4g"', "must be a JSON object .* not a JSON string", id="string"),
    pytest.param('{"executor.memory": "4g"}', "'executor.memory' is not a Spark property", id="not-spark"),
    pytest.param('{"spark.executor.instances": 4}', "value of 'spark.executor.instances' must be a JSON string.*"
                 "not a JSON number", id="number"),
    pytest.param('{"spark.executor.memory": null}', "not a JSON null", id="null"),
    pytest.param('{"spark.executor.extraJavaOptions": ["-Xss4m"]}', "not a JSON array", id="list-value"),
    pytest.param(f'{{"spark.hadoop.fs.s3a.access.key": "{VALUE}"}}', "'spark.hadoop.fs.s3a.access.key' cannot be "
                 "set here: a secret's key", id="s3a-access-key"),
    pytest.param(f'{{"spark.hadoop.fs.s3a.secret.key": "{VALUE}"}}', "secret.key' cannot be set here",
                 id="s3a-secret-key"),
    pytest.param(f'{{"spark.hadoop.fs.s3a.session.token": "{VALUE}"}}', "session.token' cannot be set here",
                 id="s3a-session-token"),
    pytest.param(f'{{"spark.hadoop.fs.s3a.bucket.raw.secret.key": "{VALUE}"}}', "cannot be set here",
                 id="per-bucket-secret-key"),
    pytest.param(f'{{"spark.executorEnv.AWS_SECRET_ACCESS_KEY": "{VALUE}"}}', "cannot be set here",
                 id="executor-env-secret"),
    pytest.param('{"spark.redaction.regex": "none"}', "'spark.redaction.regex' cannot be set here: the product",
                 id="redaction"),
    pytest.param('{"spark.sql.session.timeZone": "Europe/Paris"}', "the product sets it", id="session-time-zone"),
    pytest.param('{"spark.sql.parquet.outputTimestampType": "INT96"}', "the product sets it", id="timestamp-type"),
])
def test_a_bad_conf_is_one_line_naming_where_and_never_the_value(text, message):
    """Catches: a non-string value JSON-encoded into the conf (tried: `4` passed on as "4", null as "null", a list as
    its JSON text), a team's conf that sets the S3A keys (they would be in spark-submit's argv and the task log;
    tried: without the secret-key check the s3a-* and executor-env cases pass through), and one that sets what the
    results depend on (tried: without the PRODUCT_SPARK_CONF check)."""
    with pytest.raises(ValueError, match=message) as caught:
        spark_conf_from_json(text, "Airflow Variable 'nexgen_spark_conf'")
    line = str(caught.value)
    assert line.startswith("Airflow Variable 'nexgen_spark_conf': ") and "\n" not in line
    assert VALUE not in line


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(None, None, id="unset"), pytest.param("auto", None, id="auto"), pytest.param(" AUTO ", None, id="Auto"),
    pytest.param("true", True, id="true"), pytest.param("1", True, id="1"),
    pytest.param("false", False, id="false"), pytest.param("no", False, id="no"),
])
def test_ship_s3a_jars_is_auto_true_or_false(text, expected):
    env = {} if text is None else {"NEXGEN_SHIP_S3A_JARS": text}
    assert ship_s3a_jars_from(text) is expected
    assert Settings.from_env(env).ship_s3a_jars is expected


def test_any_other_ship_s3a_jars_value_is_named():
    """Catches: a typo read as false (the lenient flag parser), which would drop S3A from every job."""
    with pytest.raises(ValueError, match=r"^NEXGEN_SHIP_S3A_JARS: 'flase' is not auto, true or false$"):
        Settings.from_env({"NEXGEN_SHIP_S3A_JARS": "flase"})
