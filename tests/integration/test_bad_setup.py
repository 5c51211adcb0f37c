"""Bad setup gets one clear line naming what is wrong (no traceback): CLI and Airflow connection checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nexgen_etl.dev.local_services import MotoServer, create_buckets, free_port
from tests.conftest import TEST_ACCESS_KEY, TEST_SECRET
from tests.faultproxy import FaultProxy, FaultRule

EXPIRED_TOKEN = "nexgen-Expired-Session-Token-77c1"

CLI = str(Path(sys.executable).parent / "nexgen-etl")


def run_cli(env, *args):
    return subprocess.run([CLI, "run", *args], env=env, capture_output=True, text=True, timeout=120)


def base_env(aws_env, tmp_path):
    env = dict(aws_env)
    env["NEXGEN_STATE_URL"] = str(tmp_path / "state.json")
    return env


@pytest.fixture()
def strict_moto(tmp_path):
    """A moto server that checks credentials: the first 5 calls set up an IAM user with an S3 policy and one with
    none (whose key is valid but may do nothing)."""
    import json

    import boto3

    env_backup = os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT")
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "5"
    try:
        server = MotoServer(log_path=tmp_path / "moto-strict.log").start()
    finally:
        if env_backup is None:
            os.environ.pop("INITIAL_NO_AUTH_ACTION_COUNT")
        else:
            os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = env_backup
    iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    iam.create_user(UserName="etl")
    iam.put_user_policy(UserName="etl", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="etl")["AccessKey"]
    iam.create_user(UserName="no-policy")
    denied = iam.create_access_key(UserName="no-policy")["AccessKey"]
    s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                      aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    create_buckets(s3, buckets=("raw-strict", "out-strict"))
    yield server, key, denied
    server.stop()


def assert_one_clear_line(proc, *needles):
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert TEST_SECRET not in proc.stderr + proc.stdout


def test_unreachable_endpoint(aws_env, tmp_path):
    env = base_env(aws_env, tmp_path)
    env["NEXGEN_S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(env, "--raw", "s3://nexgen-raw-data/", "--output", "s3://nexgen-loading-data/")
    assert_one_clear_line(proc, "S3 endpoint", "unreachable", env["NEXGEN_S3_ENDPOINT"])


def test_missing_bucket(aws_env, tmp_path, buckets):
    raw, _ = buckets
    proc = run_cli(base_env(aws_env, tmp_path), "--raw", f"s3://{raw}/", "--output", "s3://no-such-bucket-here/")
    assert_one_clear_line(proc, "output bucket 'no-such-bucket-here' does not exist")


def test_missing_credentials(aws_env, tmp_path, buckets):
    raw, out = buckets
    env = {k: v for k, v in base_env(aws_env, tmp_path).items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    proc = run_cli(env, "--raw", f"s3://{raw}/", "--output", f"s3://{out}/")
    assert_one_clear_line(proc, "AWS credentials: none found")


def test_wrong_credentials(strict_moto, aws_env, tmp_path):
    server, key, _ = strict_moto
    env = base_env(aws_env, tmp_path)
    env.update({"NEXGEN_S3_ENDPOINT": server.url, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": TEST_SECRET})
    proc = run_cli(env, "--raw", "s3://raw-strict/", "--output", "s3://out-strict/")
    assert_one_clear_line(proc, "AWS credentials", "refused", "SignatureDoesNotMatch")


@pytest.mark.parametrize(("who", "needles"), [
    pytest.param("unknown", ("InvalidAccessKeyId", "no such access key"), id="InvalidAccessKeyId"),
    pytest.param("no-policy", ("AccessDenied", "not allowed to list this bucket"), id="AccessDenied"),
])
def test_refused_credentials_name_the_code(strict_moto, aws_env, tmp_path, who, needles):
    """An access key the endpoint does not know, and a valid key without S3 permissions, as moto's IAM-checking
    server answers them: one line naming the environment as the source, the code and what to do.

    Catches: a refusal that is not in preflight.CREDENTIAL_ERRORS falling through to a bare ClientError or to the
    generic "check the credentials" (tried: without the two entries the line named neither)."""
    server, _, denied = strict_moto
    key_id, secret = ("AKIANEXGENUNKNOWN1", TEST_SECRET) if who == "unknown" else (
        denied["AccessKeyId"], denied["SecretAccessKey"])
    env = base_env(aws_env, tmp_path)
    env.update({"NEXGEN_S3_ENDPOINT": server.url, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret})
    proc = run_cli(env, "--raw", "s3://raw-strict/", "--output", "s3://out-strict/")
    assert_one_clear_line(proc, "AWS credentials", "AWS_ACCESS_KEY_ID", "refused", *needles)
    assert secret not in proc.stderr + proc.stdout


@pytest.fixture()
def expiring_proxy(moto_server):
    """S3 as it answers requests signed with an expired session token: 400 ExpiredToken (moto does not expire
    session tokens, so the proxy gives the real wire answer for this one token; everything else passes)."""
    proxy = FaultProxy(moto_server.url, [FaultRule("error", every=1, token=EXPIRED_TOKEN, code="ExpiredToken")])
    yield proxy.start()
    proxy.stop()


def test_expired_session_token(expiring_proxy, aws_env, tmp_path, buckets):
    raw, out = buckets
    env = base_env(aws_env, tmp_path)
    env.update({"NEXGEN_S3_ENDPOINT": expiring_proxy.url, "AWS_SESSION_TOKEN": EXPIRED_TOKEN})
    proc = run_cli(env, "--raw", f"s3://{raw}/", "--output", f"s3://{out}/")
    assert_one_clear_line(proc, "AWS credentials", "AWS_ACCESS_KEY_ID", "refused", "ExpiredToken",
                          "session token has expired")
    assert EXPIRED_TOKEN not in proc.stderr + proc.stdout and TEST_ACCESS_KEY not in proc.stderr
    assert expiring_proxy.rules[0].injected >= 1  # the token really reached the endpoint and was refused


def test_credentials_refused_in_the_middle_of_a_run(expiring_proxy, tmp_path, buckets):
    """A session token that expires after the preflight: the next S3 call of the run (here discover's listing)
    fails with the same one line naming the credential source, instead of a bare botocore ClientError."""
    from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret, Settings
    from nexgen_etl.core.state import FileStateStore
    from nexgen_etl.run.pipeline import build_pipeline
    from nexgen_etl.run.preflight import SetupError

    raw, out = buckets
    settings = Settings(raw_url=f"s3://{raw}/", output_url=f"s3://{out}/",
                        s3=S3Settings(endpoint_url=expiring_proxy.url, path_style=True))
    creds = AwsCredentials(TEST_ACCESS_KEY, Secret(TEST_SECRET), Secret(EXPIRED_TOKEN))
    p = build_pipeline(settings, FileStateStore(tmp_path / "state.json"), creds, credential_source="test source")
    with pytest.raises(SetupError) as err:
        p.discover()
    msg = str(err.value)
    assert msg.startswith(f"AWS credentials (test source, access key AKIA…) were refused by {expiring_proxy.url} "
                          "(ListObjectsV2): ExpiredToken — the session token has expired"), msg
    assert "\n" not in msg and TEST_SECRET not in msg and EXPIRED_TOKEN not in msg
    assert FileStateStore(tmp_path / "state.json").read().lease is None  # the fixed re-run can start at once


def airflow_probe(env: dict, tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Run task-side code in a fresh process with the given Airflow environment (connections as env vars)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    base.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                 "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db", **env})
    return subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=300)


def test_bad_airflow_connections_each_give_one_line_naming_the_connection(expiring_proxy, strict_moto, tmp_path):
    """The DAG's first task (discover_files → checked_pipeline) with an expired session token, a wrong secret and
    no key at all in the connection: one line each, naming the connection, never the secret."""
    import json

    server, key, _ = strict_moto
    conns = {
        "aws_default": {"login": TEST_ACCESS_KEY, "password": TEST_SECRET,
                        "extra": {"endpoint_url": expiring_proxy.url, "aws_session_token": EXPIRED_TOKEN}},
        "aws_wrong": {"login": key["AccessKeyId"], "password": TEST_SECRET, "extra": {"endpoint_url": server.url}},
        "aws_nokey": {"extra": {"endpoint_url": expiring_proxy.url}},
    }
    env = {f"AIRFLOW_CONN_{c.upper()}": json.dumps({"conn_type": "aws", **v, "extra": {"region_name": "us-east-1",
                                                                                       **v["extra"]}})
           for c, v in conns.items()}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "NEXGEN_RAW_URL": "s3://raw-strict/", "NEXGEN_OUTPUT_URL": "s3://out-strict/"})
    code = ("from nexgen_etl.airflow.tasks import checked_pipeline\n"
            "from nexgen_etl.run.preflight import SetupError\n"
            f"for conn in {list(conns)!r}:\n"
            "    try:\n"
            "        checked_pipeline(conn)\n"
            "        print('NO ERROR', conn)\n"
            "    except SetupError as exc:\n"
            "        print('SetupError:', exc)\n")
    proc = airflow_probe(env, tmp_path, code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("SetupError:", "NO ERROR"))]
    assert len(lines) == 3, proc.stdout
    expired, wrong, nokey = lines
    assert expired.startswith("SetupError: AWS credentials (Airflow connection 'aws_default'"), expired
    assert "ExpiredToken" in expired and "session token has expired" in expired
    assert wrong.startswith("SetupError: AWS credentials (Airflow connection 'aws_wrong'"), wrong
    assert "SignatureDoesNotMatch" in wrong
    assert nokey.startswith("SetupError: AWS connection 'aws_nokey'"), nokey
    out = proc.stdout + proc.stderr
    assert TEST_SECRET not in out and EXPIRED_TOKEN not in out


def test_missing_jdk(aws_env, tmp_path, buckets):
    raw, out = buckets
    env = base_env(aws_env, tmp_path)
    env["JAVA_HOME"] = str(tmp_path / "no-jdk")
    proc = run_cli(env, "--raw", f"s3://{raw}/", "--output", f"s3://{out}/")
    assert_one_clear_line(proc, "Java", "JAVA_HOME", "no bin/java")


def test_missing_jars(aws_env, tmp_path, buckets):
    raw, out = buckets
    env = base_env(aws_env, tmp_path)
    env["NEXGEN_JARS_DIR"] = str(tmp_path / "empty-jars")
    proc = run_cli(env, "--raw", f"s3://{raw}/", "--output", f"s3://{out}/")
    assert_one_clear_line(proc, "S3A jars", "no hadoop-aws jar", "make jars")


def test_missing_airflow_connection(tmp_path):
    """The DAG's tasks name the missing connection instead of silently using other credentials."""
    probe = ("from nexgen_etl.airflow.connections import credentials_from_connection\n"
             "credentials_from_connection('aws_default')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db"})
    migrate = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "SetupError: Airflow connection 'aws_default' is not defined: set AIRFLOW_CONN_AWS_DEFAULT" in proc.stderr
