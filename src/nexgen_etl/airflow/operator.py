"""The transform task: the provider's SparkSubmitOperator, configured at run time from the batch `extract` froze.

Only the provider's public API is used (no attribute of the operator or its hook whose name starts with "_"; a
test parses this file to keep it so, tests/unit/airflow/test_operator.py):

- the plan URI reaches the job through `application_args`, a templated field: by default
  `["--plan", "{{ ti.xcom_pull(task_ids='extract')['plan_uri'] }}"]`, rendered by Airflow before `execute` and shown
  under Rendered Template;
- application, conf, jars and env_vars are the operator's public attributes (its constructor arguments, read by
  `execute` when it builds the hook); the driver memory goes in as the Spark conf `spark.driver.memory`, which
  spark-submit's launcher applies to a client-mode driver JVM as it does `--driver-memory`;
- the master is read from the Spark Connection with `BaseHook.get_connection` (`spark_master`), not from the hook;
- no hook is built here: the provider's `execute` builds it from these attributes (`if self._hook is None`), on
  the copy of the task the task runner makes for each try (`prepare_for_execution`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from nexgen_etl.airflow.connections import AWS_CONN_ID, credentials_from_connection
from nexgen_etl.airflow.feeds import Feed

SPARK_CONN_ID = "spark_default"
# what the provider's hook submits to when the connection cannot be loaded (hooks/spark_submit.py, the
# `"master": "yarn"` default of _resolve_connection)
DEFAULT_MASTER = "yarn"


def plan_args(extract_task_id: str = "extract") -> list[str]:
    """The job's arguments: the plan URI from the extract task's XCom (a template, rendered at run time)."""
    return ["--plan", "{{ ti.xcom_pull(task_ids='" + extract_task_id + "')['plan_uri'] }}"]


def spark_master(conn_id: str = SPARK_CONN_ID) -> str:
    """The master URL the provider's SparkSubmitHook passes to spark-submit for this connection, read through the
    public Connection API.

    The same rule as the hook (apache-airflow-providers-apache-spark 5.6.0, hooks/spark_submit.py,
    _resolve_connection): a "spark" connection whose host is a whole master URL (`spark://h:7077`, `k8s://…`) or
    has no port (`local[2]`, `yarn`) is that host; otherwise `<conn_type>://<host>`; then `:<port>` when there is
    one (a URI connection `spark://h:7077` has conn_type spark, host h, port 7077); "yarn" when the connection
    cannot be loaded."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowException:  # the hook's own fallback (AirflowNotFoundException is one)
        return DEFAULT_MASTER
    if conn.conn_type == "spark" and conn.host and ("://" in conn.host or not conn.port):
        master = conn.host
    else:
        master = f"{conn.conn_type}://{conn.host or ''}"
    return f"{master}:{conn.port}" if conn.port else master


def credentials_in_environment(master: str) -> bool:
    """Whether the AWS keys may go into spark-submit's environment: only where the hook puts env_vars into the
    process environment (local, standalone). On YARN/Kubernetes it turns them into --conf flags (argv, the Spark
    UI), so there the cluster's own identity (instance profile, IRSA) must provide them."""
    return master.startswith(("local", "spark://"))


class NexgenSparkSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator for the transform of the batch that `extract` froze.

    Everything is decided at run time: conf (S3A endpoint, region, path style, driver memory) and jars from the same
    SubmitSpec the CLI uses, sized to the batch, for the master of the Spark connection; the AWS credentials of
    `aws_conn_id` go into the spark-submit process environment only (never into a templated field, so they never
    appear in rendered templates, argv or XCom). The spec's conf holds the team's (NEXGEN_SPARK_CONF, then the
    Variables nexgen_spark_conf and nexgen_spark_conf__<feed>, read by this task: connections.spark_conf_from_airflow);
    conf given to the operator overrides all of it. The jars are the window kernel's, and S3A's where
    nexgen_etl.spark.jars.ships_s3a_jars says so (NEXGEN_SHIP_S3A_JARS).
    """

    def __init__(self, *, conn_id: str = SPARK_CONN_ID, aws_conn_id: str = AWS_CONN_ID,
                 extract_task_id: str = "extract", feed: Feed | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("application", "")
        kwargs.setdefault("application_args", plan_args(extract_task_id))
        super().__init__(conn_id=conn_id, **kwargs)
        self.spark_conn_id = conn_id
        self.aws_conn_id = aws_conn_id
        self.extract_task_id = extract_task_id
        self.feed = feed  # the feed of the DAG (None: the default feed); a worker re-parses the DAG file for it

    def execute(self, context):
        from nexgen_etl.airflow.tasks import airflow_pipeline
        from nexgen_etl.run.scratch import local_scratch, scratch_dir
        from nexgen_etl.spark.submit import input_bytes, submit_spec

        batch_id = context["ti"].xcom_pull(task_ids=self.extract_task_id)["batch_id"]
        pipeline = airflow_pipeline(self.aws_conn_id, self.feed)
        plan_uri = pipeline.plan_uri(batch_id)
        if plan_uri not in (self.application_args or []):
            raise ValueError(f"application_args {self.application_args!r} do not name the plan of batch {batch_id} "
                             f"({plan_uri}): clear the {self.extract_task_id!r} task to freeze it again")
        master = spark_master(self.spark_conn_id)
        settings = dataclasses.replace(pipeline.settings, spark_master=master)  # the spec for the master used
        spec = submit_spec(settings, batch_bytes=input_bytes(pipeline.read_plan(batch_id).objects))
        self.application = spec.application
        self.conf = {**spec.conf, "spark.driver.memory": spec.driver_memory, **(self.conf or {})}
        self.jars = ",".join(spec.jars)
        self.env_vars = {}
        if credentials_in_environment(master):
            self.env_vars = {**spec.env, **credentials_from_connection(self.aws_conn_id).as_env()}
        else:
            self.log.info("master %s: AWS credentials come from the cluster's IAM identity, not env_vars", master)
        # a local driver's temporary folders in a scratch folder of this try, removed when it ends (and by the next
        # submit on this host when the worker was killed), as the CLI's transform does
        with scratch_dir() as scratch, pipeline.reports.timed(batch_id, "transform"):  # its time, for the report
            local_conf, local_env = local_scratch(master, self.conf, scratch)
            self.conf = {**self.conf, **local_conf}
            self.env_vars = {**self.env_vars, **local_env}
            return super().execute(context)
