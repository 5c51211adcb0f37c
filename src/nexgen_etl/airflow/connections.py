"""Settings and credentials from the Airflow Connection `aws_default` (and the Variables naming the locations and
holding a team's Spark conf).

Imported only inside task code (never at DAG parse time), so parsing the DAG touches no Connection or network.
Airflow names are the public ones: `airflow.sdk` (BaseHook, Variable), `airflow.sdk.log` (mask_secret) and the
Amazon provider's AwsBaseHook.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret, Settings, spark_conf_from_json
from nexgen_etl.run.preflight import SetupError

if TYPE_CHECKING:
    from nexgen_etl.airflow.feeds import Feed

AWS_CONN_ID = "aws_default"
# a team's Spark conf (a JSON object of strings); a feed other than the default one also reads <name>__<feed>
SPARK_CONF_VARIABLE = "nexgen_spark_conf"


def aws_hook(conn_id: str = AWS_CONN_ID):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type="s3")


def require_connection(conn_id: str) -> None:
    """Fail with one line when the Connection does not exist (the AWS hook would silently fall back to boto3's
    default credential chain)."""
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException moved between Airflow versions
        if "not defined" in str(exc) or "NotFound" in type(exc).__name__:
            raise SetupError(f"Airflow connection {conn_id!r} is not defined: set AIRFLOW_CONN_{conn_id.upper()} "
                             "or add it under Admin → Connections") from None
        raise


def mask_credentials(*secrets: str | None) -> None:
    """Tell Airflow's secret masker (task process and supervisor) about the keys actually used. Airflow masks
    the connection's password and sensitive extra fields when it loads the connection, but keys the hook gets
    at run time (a profile, an assumed role's STS session) never pass through the connection."""
    from airflow.sdk.log import mask_secret

    for s in secrets:
        if s:
            mask_secret(s)


def credentials_from_connection(conn_id: str = AWS_CONN_ID) -> AwsCredentials:
    """Credentials of the Airflow Connection (one clear error naming it when they are missing)."""
    require_connection(conn_id)
    try:
        creds = aws_hook(conn_id).get_credentials()
    except Exception as exc:  # noqa: BLE001
        raise SetupError(f"AWS connection {conn_id!r}: cannot get credentials ({type(exc).__name__})") from None
    if not creds or not creds.access_key or not creds.secret_key:
        raise SetupError(f"AWS connection {conn_id!r} has no access key / secret key")
    mask_credentials(creds.secret_key, creds.token)
    return AwsCredentials(creds.access_key, Secret(creds.secret_key), Secret(creds.token) if creds.token else None)


def settings_from_airflow(conn_id: str = AWS_CONN_ID, feed: Feed | None = None) -> Settings:
    """Settings from the environment, with the S3 endpoint and region of the Airflow Connection and the feed's
    locations and contract (nexgen_etl.airflow.feeds): the default feed's from the Variables nexgen_raw_url /
    nexgen_output_url / nexgen_contract when they are set, another feed's from its own Variables
    (nexgen_raw_url__<feed>, nexgen_output_url__<feed>) or else under the shared ones, and its contract file; the
    Spark conf of spark_conf_from_airflow.

    Called by each task when it runs (never at DAG parse time), so a changed Variable applies to the next task."""
    from airflow.sdk import Variable

    from nexgen_etl.airflow.feeds import default_feed

    feed = feed or default_feed()
    require_connection(conn_id)
    hook = aws_hook(conn_id)
    base = Settings.from_env()
    endpoint = hook.conn_config.endpoint_url or base.s3.endpoint_url
    s3 = S3Settings(endpoint_url=endpoint, region=hook.conn_region_name or base.s3.region,
                    path_style=bool(endpoint) or base.s3.path_style)

    def var(name: str) -> str | None:
        return Variable.get(name, default=None) or None

    raw_url = var("nexgen_raw_url") or base.raw_url
    output_url = var("nexgen_output_url") or base.output_url
    if feed.is_default:
        contract_path = var("nexgen_contract") or base.contract_path or feed.contract_path
    else:
        raw_url = var(feed.variable("nexgen_raw_url")) or raw_url
        output_url = var(feed.variable("nexgen_output_url")) or feed.output_url(output_url)
        contract_path = feed.contract_path
    return dataclasses.replace(base, s3=s3, raw_url=raw_url, output_url=output_url, contract_path=contract_path,
                               spark_conf=spark_conf_from_airflow(base.spark_conf, feed, var))


def spark_conf_from_airflow(env_conf: dict[str, str], feed: Feed, var) -> dict[str, str]:
    """A team's Spark conf, key by key, the later winning: NEXGEN_SPARK_CONF (env_conf, the deployment's environment),
    then the Variable nexgen_spark_conf, then the feed's own nexgen_spark_conf__<feed> (a feed other than the default
    one). The narrower source wins, as the location Variables win over NEXGEN_RAW_URL / NEXGEN_OUTPUT_URL: the
    environment is the deployment's baseline, fixed when it is built; a Variable is changed in the UI, without a
    redeploy, for every feed or for one. A bad value (not a JSON object of strings, or a key the product controls:
    spark_conf_from_json) fails the task with one line naming the Variable."""
    conf = dict(env_conf)
    for name in dict.fromkeys([SPARK_CONF_VARIABLE, feed.variable(SPARK_CONF_VARIABLE)]):
        try:
            conf.update(spark_conf_from_json(var(name), f"Airflow Variable {name!r}"))
        except ValueError as exc:
            raise SetupError(str(exc)) from None
    return conf
