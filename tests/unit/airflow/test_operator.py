"""NexgenSparkSubmitOperator on the Spark provider's public API only.

Two guards: this package's Airflow code is parsed for any private name (an attribute starting with "_" of the
operator, its hook or anything else; an internal airflow.sdk module), and the operator is run for real (templates
rendered by Airflow, the provider's execute building its hook and the spark-submit command from the Connection)
with only the final subprocess launch replaced by a recorder, to check the command and environment it would run.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from nexgen_etl.airflow import tasks
from tests.unit.airflow.conftest import as_xcom

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "nexgen_etl" / "airflow"
# airflow.sdk's internals: its public names are in airflow.sdk itself (and airflow.sdk.log, .exceptions)
INTERNAL_MODULES = ("airflow.sdk.bases", "airflow.sdk.definitions", "airflow.sdk.execution_time", "airflow.sdk.api",
                    "airflow.models", "airflow.utils")
# the connection's keys, distinct from the ones tests/conftest.py puts into this process's environment
CONN_KEY, CONN_SECRET = "AKIAOPERATORTEST2", "operator-Conn-Secret-6c1d"


def private_uses(path: Path) -> list[str]:
    """Each access to a private name in a module: `x._name` (any object: self, a hook, a connection dict's owner),
    getattr/setattr/hasattr/delattr with a literal "_name", an import from a private or internal module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_")):
            found.append(f"{path.name}:{node.lineno} {node.func.id}(…, {node.args[1].value!r})")
        elif isinstance(node, ast.ImportFrom) and node.module:
            private = any(p.startswith("_") and not p.startswith("__") for p in node.module.split("."))
            if private or node.module.startswith(INTERNAL_MODULES):
                found.append(f"{path.name}:{node.lineno} from {node.module} import …")
    return found


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py")))
def test_airflow_code_uses_no_private_name_of_airflow_or_the_provider(module):
    """Catches: `self._driver_memory = spec.driver_memory`, `self._hook = None`,
    `self._get_hook()._connection["master"]` in the operator (tried: each fails here), `from airflow.sdk.bases.hook
    import BaseHook` in connections.py. The next provider release may rename any of them without notice."""
    assert private_uses(PACKAGE / module) == []


def test_the_guard_sees_the_old_private_accesses(tmp_path):
    """The parser above finds what the operator used to do (so an empty list means something)."""
    old = tmp_path / "old.py"
    old.write_text("def execute(self, context):\n"
                   "    self._driver_memory = '1g'\n"
                   "    self._hook = None\n"
                   "    master = self._get_hook()._connection['master']\n"
                   "    getattr(self, '_conn_id')\n"
                   "from airflow.sdk.bases.hook import BaseHook\n")
    assert len(private_uses(old)) == 6


# -- the operator, run ----------------------------------------------------------------------------------------

class Launch:
    """Stands in for subprocess.Popen in the provider's hook module: records the spark-submit command and its
    keyword arguments (env), and 'runs' it successfully. Everything before the launch is the provider's own code."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict]] = []

    def Popen(self, argv, **kwargs):  # noqa: N802 - the name it replaces
        self.calls.append(([str(a) for a in argv], kwargs))
        return SimpleNamespace(stdout=iter(["recorded, not run\n"]), wait=lambda: 0)

    @property
    def argv(self) -> list[str]:
        assert len(self.calls) == 1, self.calls
        return self.calls[0][0]

    @property
    def env(self) -> dict | None:
        return self.calls[0][1].get("env")


class TaskInstance:
    """The piece of the task instance the operator and its template use: extract's XCom."""

    def __init__(self, xcoms: dict[str, dict]) -> None:
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str, **_):
        return self.xcoms[task_ids]


@pytest.fixture()
def frozen_batch(local_pipeline, monkeypatch):
    """A batch frozen by the discover and extract task bodies; Variables and the AWS Connection pointing the
    operator's own pipeline (airflow_pipeline) at the same local folders."""
    p = local_pipeline
    batch = as_xcom(tasks.extract(as_xcom(tasks.discover(None, pipeline=p)), pipeline=p))
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_RAW_URL", p.raw.url)
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_OUTPUT_URL", p.out.url)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": CONN_KEY, "password": CONN_SECRET,
        "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"}}))
    for name in ("NEXGEN_SPARK_EVENT_LOG_DIR", "NEXGEN_DRIVER_MEMORY", "NEXGEN_SPARK_MASTER"):
        monkeypatch.delenv(name, raising=False)
    return p, batch


@pytest.fixture()
def launch(monkeypatch) -> Launch:
    from airflow.providers.apache.spark.hooks import spark_submit as hook_module

    rec = Launch()
    monkeypatch.setattr(hook_module, "subprocess",
                        SimpleNamespace(Popen=rec.Popen, PIPE=subprocess.PIPE, STDOUT=subprocess.STDOUT))
    return rec


def run_transform(batch: dict, **kwargs):
    """The transform task as the task runner runs it: a copy of the operator, its templates rendered, execute."""
    from nexgen_etl.airflow.operator import NexgenSparkSubmitOperator

    op = NexgenSparkSubmitOperator(task_id="transform", conn_id="spark_default", name="nexgen-etl-transform", **kwargs)
    op = op.prepare_for_execution()
    context = {"ti": TaskInstance({"extract": batch})}
    op.render_template_fields(context)
    op.execute(context)
    return op


def conf_of(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf")


def expected_spec(p, batch, master: str):
    import dataclasses

    from nexgen_etl.spark.submit import input_bytes, submit_spec

    # the settings as the task sees them: S3 endpoint and region from the AWS Connection
    settings = dataclasses.replace(tasks.airflow_pipeline().settings, spark_master=master)
    return submit_spec(settings, batch_bytes=input_bytes(p.read_plan(batch["batch_id"]).objects))


@pytest.mark.parametrize(("connection", "master", "creds"), [
    pytest.param({"conn_type": "spark", "host": "local[2]"}, "local[2]", True, id="local"),
    pytest.param("spark://spark-master.example:7077", "spark://spark-master.example:7077", True, id="spark-uri"),
    pytest.param({"conn_type": "spark", "host": "spark://spark-master.example", "port": 7077},
                 "spark://spark-master.example:7077", True, id="spark-host-and-port"),
    pytest.param({"conn_type": "spark", "host": "yarn"}, "yarn", False, id="yarn"),
    pytest.param(None, "yarn", False, id="no-connection"),
])
def test_transform_runs_the_spark_submit_of_the_submit_spec(frozen_batch, launch, monkeypatch, tmp_path, connection,
                                                            master, creds):
    """The command the provider's hook would run: the connection's master (as the hook resolves it, which
    spark_master must agree with), the driver memory as --conf spark.driver.memory (no --driver-memory: catches
    `self._driver_memory = ...` back in execute, tried), every --conf of the spec, the application, and --plan with
    extract's plan URI from the rendered template. The AWS keys go into the process environment for local and
    standalone masters only, and never into argv; the transform's time is recorded for the run report. A local
    driver's temporary folders go to a scratch folder of the try, gone when it ends (catches the operator leaving
    them in Spark's default /tmp, where a killed worker's shuffle files stay: tried).
    """
    from nexgen_etl.airflow.operator import spark_master

    p, batch = frozen_batch
    monkeypatch.setenv("NEXGEN_SCRATCH_DIR", str(tmp_path / "scratch"))
    if connection is None:
        monkeypatch.delenv("AIRFLOW_CONN_SPARK_DEFAULT", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT",
                           connection if isinstance(connection, str) else json.dumps(connection))
    assert spark_master("spark_default") == master
    op = run_transform(batch)
    argv, env = launch.argv, launch.env
    spec = expected_spec(p, batch, master)

    assert argv[argv.index("--master") + 1] == master
    assert "--driver-memory" not in argv
    conf = conf_of(argv)
    scratch = conf.pop("spark.local.dir", None)
    assert conf == {**spec.conf, "spark.driver.memory": spec.driver_memory}
    assert (scratch is not None) == master.startswith("local")
    if scratch is not None:
        assert Path(scratch).parent == tmp_path / "scratch" and env["SPARK_LOCAL_DIRS"] == scratch
        assert not Path(scratch).exists()  # removed when the try ended
    assert argv[-3:] == [spec.application, "--plan", batch["plan_uri"]]
    assert op.application_args == ["--plan", p.plan_uri(batch["batch_id"])]
    assert ("--jars" in argv) == bool(spec.jars)
    assert not any(CONN_SECRET in a or CONN_KEY in a for a in argv)
    if creds:
        assert env["AWS_ACCESS_KEY_ID"] == CONN_KEY and env["AWS_SECRET_ACCESS_KEY"] == CONN_SECRET
        assert env["SPARK_HOME"] == spec.env["SPARK_HOME"]
    else:
        assert env is None or not any(CONN_SECRET in str(v) or CONN_KEY in str(v) for v in env.values())
    from nexgen_etl.core.report import read_steps

    steps = read_steps(p.out, batch["batch_id"])
    assert "transform" in json.dumps(steps)


def test_conf_and_driver_memory_given_to_the_operator_win(frozen_batch, launch, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    p, batch = frozen_batch
    run_transform(batch, conf={"spark.driver.memory": "3g", "spark.sql.shuffle.partitions": "7"})
    conf = conf_of(launch.argv)
    assert conf["spark.driver.memory"] == "3g" and conf["spark.sql.shuffle.partitions"] == "7"


def test_a_plan_uri_that_is_not_the_batch_s_is_refused_before_spark_submit(frozen_batch, launch, monkeypatch):
    """An extract XCom without plan_uri (written before it had one) renders `--plan ''`: one clear error, no launch."""
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    _, batch = frozen_batch
    old = {k: v for k, v in batch.items() if k != "plan_uri"}
    with pytest.raises(ValueError, match="do not name the plan of batch"):
        run_transform(old)
    assert launch.calls == []


def test_the_template_is_the_plan_argument_of_the_extract_task():
    from nexgen_etl.airflow.operator import NexgenSparkSubmitOperator

    op = NexgenSparkSubmitOperator(task_id="transform", extract_task_id="freeze")
    assert op.application_args == ["--plan", "{{ ti.xcom_pull(task_ids='freeze')['plan_uri'] }}"]
    assert "application_args" in op.template_fields and "env_vars" in op.template_fields
    assert not op.env_vars  # credentials are added in execute, after rendering, never as a template


@pytest.mark.parametrize(("connection", "master"), [
    ({"conn_type": "spark", "host": "local[*]"}, "local[*]"),
    ({"conn_type": "spark", "host": "k8s://https://kube.example:6443"}, "k8s://https://kube.example:6443"),
    ("spark://spark-master.example", "spark-master.example"),  # the provider's own rule: no port, host only
    ({"conn_type": "yarn", "host": "rm.example", "port": 8032}, "yarn://rm.example:8032"),
])
def test_spark_master_follows_the_provider_s_rule(monkeypatch, connection, master):
    from nexgen_etl.airflow.operator import credentials_in_environment, spark_master

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_X", connection if isinstance(connection, str) else json.dumps(connection))
    assert spark_master("spark_x") == master
    assert credentials_in_environment(master) == master.startswith("local")


# -- a team's Spark conf and the S3A jars, as spark-submit gets them ---------------------------------------------

def jar_names(argv: list[str]) -> list[str]:
    return [j.rsplit("/", 1)[-1] for j in argv[argv.index("--jars") + 1].split(",")] if "--jars" in argv else []


@pytest.mark.parametrize(("master", "ship", "s3a"), [
    pytest.param("yarn", None, False, id="yarn-auto"),
    pytest.param("yarn", "true", True, id="yarn-true"),
    # (not k8s:// here: the Spark provider's hook needs apache-airflow-providers-cncf-kubernetes for it)
    pytest.param("spark://spark-master.example:7077", None, True, id="standalone-auto"),
    pytest.param("spark://spark-master.example:7077", "false", False, id="standalone-false"),
])
def test_the_teams_conf_and_the_jar_setting_reach_spark_submit(frozen_batch, launch, monkeypatch, master, ship, s3a):
    """The Variable nexgen_spark_conf over NEXGEN_SPARK_CONF, key by key, in the command the provider's hook runs,
    the team's spark.driver.memory included; --jars without hadoop-aws and its AWS SDK where they are not shipped,
    with nexgen-spark.jar always. Catches: the Variable not reaching the transform task (tried: settings_from_airflow
    without the Variables' conf), the sized driver memory written over the team's (tried: submit_spec's driver memory
    taken from the sizing alone), and NEXGEN_SHIP_S3A_JARS not reaching the operator (tried: Settings.from_env not
    reading it; resolved_jars without the ships_s3a_jars filter)."""
    from nexgen_etl.spark.jars import KERNEL_JAR

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": master}))
    monkeypatch.setenv("NEXGEN_SPARK_CONF", json.dumps({"spark.executor.cores": "2", "spark.executor.memory": "2g"}))
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_SPARK_CONF", json.dumps({"spark.executor.memory": "6g",
                                                                    "spark.driver.memory": "3g"}))
    if ship is None:
        monkeypatch.delenv("NEXGEN_SHIP_S3A_JARS", raising=False)
    else:
        monkeypatch.setenv("NEXGEN_SHIP_S3A_JARS", ship)
    _, batch = frozen_batch
    run_transform(batch)
    argv = launch.argv
    conf = conf_of(argv)
    assert (conf["spark.executor.cores"], conf["spark.executor.memory"], conf["spark.driver.memory"]) == \
        ("2", "6g", "3g")
    names = jar_names(argv)
    assert KERNEL_JAR in names
    assert any(n.startswith("hadoop-aws-") for n in names) == s3a
    assert any(n.startswith("aws-java-sdk-bundle-") for n in names) == s3a


def test_a_bad_spark_conf_variable_stops_the_transform_before_spark_submit(frozen_batch, launch, monkeypatch):
    """A credential key in the Variable: one line naming it, no spark-submit, the value nowhere in the error."""
    from nexgen_etl.run.preflight import SetupError

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("AIRFLOW_VAR_NEXGEN_SPARK_CONF", json.dumps({"spark.hadoop.fs.s3a.secret.key": CONN_SECRET}))
    _, batch = frozen_batch
    with pytest.raises(SetupError, match=r"^Airflow Variable 'nexgen_spark_conf': 'spark\.hadoop\.fs\.s3a\.secret\.key'"
                                         r" cannot be set here") as caught:
        run_transform(batch)
    assert CONN_SECRET not in str(caught.value) and launch.calls == []
