"""Checks of the setup before a run, each failing with one clear line that names what is wrong."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

from nexgen_etl.core.settings import AwsCredentials, Settings


class SetupError(RuntimeError):
    """The environment cannot run the pipeline; the message is one line naming the problem."""


def check_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if not java.exists():
            raise SetupError(f"Java: JAVA_HOME={home} has no bin/java; install a JDK 17 (scripts/setup.sh) "
                             "or fix JAVA_HOME")
        return str(java)
    java = shutil.which("java")
    if not java:
        raise SetupError("Java: no `java` on PATH and JAVA_HOME is not set; install a JDK 17 (scripts/setup.sh)")
    return java


def check_jars(settings: Settings) -> list[str]:
    from nexgen_etl.spark.jars import resolved_jars

    try:
        return resolved_jars(settings)
    except FileNotFoundError as exc:
        raise SetupError(f"S3A jars: {exc}") from None


def _bucket(url: str) -> tuple[str, str] | None:
    u = urlparse(url)
    return (u.netloc, u.path.lstrip("/")) if u.scheme in {"s3", "s3a"} else None


# S3 error codes that mean "these credentials are not (or no longer) good", with what to do about each
CREDENTIAL_ERRORS = {
    "ExpiredToken": "the session token has expired: renew the temporary credentials",
    "TokenRefreshRequired": "the session token has expired: renew the temporary credentials",
    "InvalidToken": "the session token is malformed or not valid for this access key",
    "InvalidAccessKeyId": "no such access key at this endpoint (deleted, or for another account/endpoint)",
    "SignatureDoesNotMatch": "the secret key does not belong to this access key",
    "AccessDenied": "the key is valid but not allowed to list this bucket (check its IAM policy)",
    "403": "the key is valid but not allowed to list this bucket (check its IAM policy)",
}


def credentials_refused(code: str, source: str, access_key_id: str, target: str) -> str:
    """One line naming where the credentials came from, the error and its fix; never the secret, and only the
    first four characters of the access key id."""
    return (f"AWS credentials ({source}, access key {access_key_id[:4]}…) were refused by {target}: {code} — "
            f"{CREDENTIAL_ERRORS.get(code, 'check the credentials')}")


def name_credential_errors(client, source: str, access_key_id: str | None):
    """Make every later call of this boto3 client that S3 refuses for its credentials (e.g. a session token that
    expires in the middle of a run) fail with the same one line as the preflight, naming the source."""
    endpoint = client.meta.endpoint_url

    def refused(http_response=None, parsed=None, model=None, **_):
        code = ((parsed or {}).get("Error") or {}).get("Code", "")
        if code in CREDENTIAL_ERRORS:
            raise SetupError(credentials_refused(code, source, access_key_id or "?",
                                                 f"{endpoint} ({model.name if model else 'S3'})"))

    client.meta.events.register("after-call.s3", refused)
    return client


def boto3_credential_source() -> str:
    """Where boto3's default chain found credentials, for error messages (e.g. the environment variables)."""
    import boto3

    creds = boto3.session.Session().get_credentials()
    method = getattr(creds, "method", None) if creds else None
    if method == "env":
        return "environment AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" + (
            "/AWS_SESSION_TOKEN" if os.environ.get("AWS_SESSION_TOKEN") else "")
    if method:
        return f"boto3 credential source {method!r}"
    return "boto3 default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile or role"


def check_s3(settings: Settings, credentials: AwsCredentials | None, source: str = "credentials") -> None:
    """Endpoint reachable, credentials accepted, both buckets there: one cheap call per bucket, few retries."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    targets = [("raw", _bucket(settings.raw_url)), ("output", _bucket(settings.output_url))]
    targets = [(role, b) for role, b in targets if b]
    if not targets:
        return
    if credentials is None:
        raise SetupError(f"AWS credentials: none found ({source})")
    s3 = settings.s3
    client = boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key.reveal(),
        aws_session_token=credentials.session_token.reveal() if credentials.session_token else None,
        # retries are this function's own (below): botocore's would retry an endpoint that refuses connections
        # as long as one that dropped a connection
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=10,
                      s3={"addressing_style": "path" if s3.path_style else "auto"}))
    where = s3.endpoint_url or f"AWS S3 ({s3.region})"
    for role, (bucket, prefix) in targets:
        try:
            _list_once(client, bucket, prefix)
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise SetupError(f"S3 endpoint {where} is unreachable ({type(exc).__name__})") from None
        except (ConnectionClosedError, ReadTimeoutError) as exc:
            raise SetupError(f"S3 endpoint {where} dropped {PREFLIGHT_ATTEMPTS} connections in a row "
                             f"({type(exc).__name__})") from None
        except NoCredentialsError:
            raise SetupError(f"AWS credentials: none found ({source})") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchBucket", "404"}:
                raise SetupError(f"{role} bucket {bucket!r} does not exist at {where}") from None
            if code in CREDENTIAL_ERRORS:
                raise SetupError(credentials_refused(code, source, credentials.access_key_id,
                                                     f"{where} for bucket {bucket!r}")) from None
            raise SetupError(f"{role} bucket {bucket!r} at {where}: {code or exc}") from None


# one listing per bucket: an endpoint that refuses connections fails at once (twice), while dropped connections
# and throttling or 5xx answers are retried PREFLIGHT_ATTEMPTS times in all, with exponential waits (~3 s in all)
PREFLIGHT_ATTEMPTS = 6
UNREACHABLE_ATTEMPTS = 2
TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}


def _list_once(client, bucket: str, prefix: str) -> None:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    for attempt in range(1, PREFLIGHT_ATTEMPTS + 1):
        try:
            client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            return
        except (EndpointConnectionError, ConnectTimeoutError):
            if attempt >= UNREACHABLE_ATTEMPTS:
                raise
        except (ConnectionClosedError, ReadTimeoutError):
            if attempt >= PREFLIGHT_ATTEMPTS:
                raise
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") not in TRANSIENT_CODES or attempt >= PREFLIGHT_ATTEMPTS:
                raise
        time.sleep(0.1 * 2 ** attempt)


def preflight(settings: Settings, credentials: AwsCredentials | None, source: str = "credentials",
              spark: bool = True) -> None:
    check_s3(settings, credentials, source)
    if spark:
        check_java()
        check_jars(settings)
