"""Airflow-side doors into the pipeline: the Variable state store, settings from Connections, the Spark operator.

Imported only inside task code (never at DAG parse time), so parsing the DAG touches no Variable or network.
"""

from __future__ import annotations

import dataclasses

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from nexgen_etl.run.preflight import SetupError
from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret, Settings
from nexgen_etl.core.state import StaleStateError, Watermark

STATE_VARIABLE = "nexgen_etl_state"
AWS_CONN_ID = "aws_default"


class VariableStateStore:
    """The watermark as versioned JSON in an Airflow Variable, written with a version check."""

    def __init__(self, key: str = STATE_VARIABLE) -> None:
        self.key = key

    def read(self) -> Watermark:
        from airflow.sdk import Variable

        return Watermark.from_json(Variable.get(self.key, default=None))

    def compare_and_set(self, expected_revision: int, new: Watermark) -> None:
        """Airflow Variables have no conditional write: this checks the revision right before writing (the
        window between the two is what max_active_runs=1 and the lease close)."""
        from airflow.sdk import Variable

        current = self.read()
        if current.revision != expected_revision:
            raise StaleStateError(f"Variable {self.key} is at revision {current.revision}, "
                                  f"expected {expected_revision}: another run wrote it first")
        Variable.set(self.key, new.to_json(), description="NexGen ETL watermark (written only by the commit task)")


def aws_hook(conn_id: str = AWS_CONN_ID):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type="s3")


def require_connection(conn_id: str) -> None:
    """Fail with one line when the Connection does not exist (the AWS hook would silently fall back to boto3's
    default credential chain)."""
    from airflow.sdk.bases.hook import BaseHook

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


def settings_from_airflow(conn_id: str = AWS_CONN_ID) -> Settings:
    """Settings from the environment, with the S3 endpoint and region of the Airflow Connection and the
    locations from the Variables nexgen_raw_url / nexgen_output_url when they are set."""
    from airflow.sdk import Variable

    require_connection(conn_id)
    hook = aws_hook(conn_id)
    base = Settings.from_env()
    endpoint = hook.conn_config.endpoint_url or base.s3.endpoint_url
    s3 = S3Settings(endpoint_url=endpoint, region=hook.conn_region_name or base.s3.region,
                    path_style=bool(endpoint) or base.s3.path_style)
    return dataclasses.replace(
        base, s3=s3,
        raw_url=Variable.get("nexgen_raw_url", default=None) or base.raw_url,
        output_url=Variable.get("nexgen_output_url", default=None) or base.output_url,
        contract_path=Variable.get("nexgen_contract", default=None) or base.contract_path,
    )


AIRFLOW_OWNER = "airflow:nexgen_etl_pipeline"  # one owner for all runs: max_active_runs=1 orders them


def airflow_pipeline(conn_id: str = AWS_CONN_ID):
    from nexgen_etl.core.contract import load_contract
    from nexgen_etl.run.pipeline import Pipeline
    from nexgen_etl.run.preflight import name_credential_errors
    from nexgen_etl.core.storage import open_store

    settings = settings_from_airflow(conn_id)

    def factory():
        hook = aws_hook(conn_id)
        return name_credential_errors(hook.get_conn(), f"Airflow connection {conn_id!r}",
                                      hook.conn_config.aws_access_key_id)

    return Pipeline(settings=settings, contract=load_contract(settings.contract_path),
                    raw=open_store(settings.raw_url, factory), out=open_store(settings.output_url, factory),
                    state=VariableStateStore(), owner=AIRFLOW_OWNER)


def checked_pipeline(conn_id: str = AWS_CONN_ID):
    """The pipeline after the preflight checks: a missing, wrong or expired key of the connection fails the first
    task with one line naming the connection."""
    from nexgen_etl.run.preflight import preflight

    pipeline = airflow_pipeline(conn_id)
    preflight(pipeline.settings, credentials_from_connection(conn_id), source=f"Airflow connection {conn_id!r}")
    return pipeline


def apply_operation(pipeline, params: dict) -> str | None:
    """The DAG params' state operation (reset, rewind, reprocess, rebuild) before the pass; None for 'run'."""
    from datetime import datetime

    params = params or {}
    op = params.get("operation") or "run"
    since = datetime.fromisoformat(params["since"]) if params.get("since") else None
    if pipeline.apply_operation(op, to_batch=params.get("to_batch") or None, key=params.get("key") or None,
                                prefix=params.get("prefix") or None, since=since) is None:
        return None
    return op


class NexgenSparkSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator for the transform of the batch that `extract` froze.

    Everything is decided at run time: conf (S3A endpoint, region, path style) and jars from the same SubmitSpec
    the CLI uses, and the AWS credentials of `aws_conn_id` put into the spark-submit process environment only
    (not into templated fields, so they never appear in rendered templates, argv or XCom).
    """

    def __init__(self, *, aws_conn_id: str = AWS_CONN_ID, extract_task_id: str = "extract", **kwargs) -> None:
        kwargs.setdefault("application", "")
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.extract_task_id = extract_task_id

    def execute(self, context):
        from nexgen_etl.spark.submit import input_bytes, submit_spec

        batch = context["ti"].xcom_pull(task_ids=self.extract_task_id)
        pipeline = airflow_pipeline(self.aws_conn_id)
        plan = pipeline.read_plan(batch["batch_id"])
        spec = submit_spec(pipeline.settings, batch_bytes=input_bytes(plan.objects))
        self.application = spec.application
        self.application_args = ["--plan", pipeline.plan_uri(batch["batch_id"])]
        self.conf = {**spec.conf, **(self.conf or {})}
        self.jars = ",".join(spec.jars)
        self._driver_memory = spec.driver_memory
        self._hook = None
        master = self._get_hook()._connection["master"]
        self.env_vars = {}
        if master.startswith(("local", "spark://")):
            self.env_vars = {**spec.env, **credentials_from_connection(self.aws_conn_id).as_env()}
        else:
            # On YARN/Kubernetes the provider would turn env_vars into --conf flags (visible in argv and the
            # Spark UI), so credentials must come from the cluster's own identity (instance profile, IRSA).
            self.log.info("master %s: AWS credentials come from the cluster's IAM identity, not env_vars", master)
        self._hook = None
        with pipeline.timed_step(batch["batch_id"], "transform"):  # its wall time, for the run report
            return super().execute(context)
