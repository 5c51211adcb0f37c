"""Run settings (locations, endpoint, Spark master, jars) read from the environment; secrets as their own type."""

from __future__ import annotations

import hmac
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("NEXGEN_HOME") or Path(__file__).resolve().parents[3])


class Secret:
    """A secret value that never shows itself: repr, str, f-strings, %s and logging give ***. It is not a str, so
    `json.dumps`, pickling and concatenation with a str fail instead of carrying the value along; `reveal()` is the
    one way to the value, used only where a client or a child's environment needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self):
        raise TypeError("a Secret is not pickled or copied out of its process")


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None = None

    def as_env(self) -> dict[str, str]:
        """The environment S3A's EnvironmentVariableCredentialsProvider and boto3 read."""
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key.reveal()}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token.reveal()
        return env


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    region: str = "us-east-1"
    path_style: bool = False


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def default_jars_dir() -> Path:
    return Path(os.environ.get("NEXGEN_JARS_DIR", PROJECT_ROOT / "jars" / "lib"))


# Spark's default redaction pattern (secret|password|token|access[.]key) plus the environment-variable spellings
# (ACCESS_KEY_ID): the submit spec sets it as spark.redaction.regex, and a team's conf may set no key it matches
REDACTION_REGEX = r"(?i)secret|password|token|access[._]?key"
# what the product's results and credentials depend on (nexgen_etl.spark.submit): not a team's to change. The SQL
# settings fix how timestamps are parsed and written and how partition values are typed, the redaction keeps secrets
# out of the UI and event log
PRODUCT_SPARK_CONF = frozenset({
    "spark.redaction.regex",
    "spark.sql.session.timeZone",
    "spark.sql.legacy.timeParserPolicy",
    "spark.sql.sources.partitionColumnTypeInference.enabled",
    "spark.sql.parquet.outputTimestampType",
})


def refused_spark_conf_key(key: str) -> str | None:
    """Why a team's conf may not set this key, or None.

    A team's conf goes into spark-submit's argv (`--conf k=v`: the process list, the task log), so no key whose
    value is a secret (the S3A keys `spark.hadoop.fs.s3a.access.key`, `.secret.key`, `.session.token`, their
    per-bucket forms, anything else REDACTION_REGEX matches; a key naming a file, `…File`, holds a path): the
    credentials come from the AWS Connection through the environment, or from the cluster's identity."""
    if key in PRODUCT_SPARK_CONF:
        return "the product sets it (its results depend on it)"
    if re.search(REDACTION_REGEX, key) and not key.lower().endswith("file"):
        return ("a secret's key: the conf is spark-submit's argv; credentials come from the AWS connection or the "
                "cluster's identity")
    return None


def json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def spark_conf_from_json(text: str | None, where: str) -> dict[str, str]:
    """A team's own Spark conf: a JSON object of Spark properties with string values (merged over the product's
    conf by the submit spec). Anything else is a one-line ValueError naming `where`, never echoing a value."""
    if not text or not text.strip():
        return {}
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(conf, dict):
        raise ValueError(f"{where}: must be a JSON object of Spark properties, e.g. "
                         f'{{"spark.executor.memory": "4g"}}, not a JSON {json_type(conf)}')
    for key, value in conf.items():
        if not key.startswith("spark."):
            raise ValueError(f"{where}: {key!r} is not a Spark property (they start with 'spark.')")
        if (why := refused_spark_conf_key(key)) is not None:
            raise ValueError(f"{where}: {key!r} cannot be set here: {why}")
        if not isinstance(value, str):
            raise ValueError(f"{where}: the value of {key!r} must be a JSON string (Spark conf values are "
                             f"strings, e.g. \"4\"), not a JSON {json_type(value)}")
    return conf


def ship_s3a_jars_from(text: str | None, where: str = "NEXGEN_SHIP_S3A_JARS") -> bool | None:
    """auto (None: the submit spec decides by the master), true or false; anything else is a one-line ValueError."""
    value = (text or "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{where}: {text!r} is not auto, true or false")


@dataclass(frozen=True)
class Settings:
    raw_url: str = "s3://nexgen-raw-data/"
    output_url: str = "s3://nexgen-loading-data/"
    state_url: str = ".nexgen/state.json"
    contract_path: str | None = None
    spark_master: str = "local[2]"
    jars_dir: Path = field(default_factory=default_jars_dir)
    s3: S3Settings = field(default_factory=S3Settings)
    spark_conf: dict[str, str] = field(default_factory=dict)
    # whether the S3A jars of jars_dir go with the job; None: auto (nexgen_etl.spark.jars.ships_s3a_jars)
    ship_s3a_jars: bool | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        """Settings from NEXGEN_* variables (and the AWS endpoint ones); overrides that are not None win."""
        env = dict(os.environ if env is None else env)
        endpoint = env.get("NEXGEN_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        s3 = S3Settings(
            endpoint_url=endpoint or None,
            region=env.get("NEXGEN_S3_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            path_style=_flag(env.get("NEXGEN_S3_PATH_STYLE"), default=bool(endpoint)),
        )
        values = dict(
            raw_url=env.get("NEXGEN_RAW_URL", cls.raw_url),
            output_url=env.get("NEXGEN_OUTPUT_URL", cls.output_url),
            state_url=env.get("NEXGEN_STATE_URL", cls.state_url),
            contract_path=env.get("NEXGEN_CONTRACT") or None,
            spark_master=env.get("NEXGEN_SPARK_MASTER", cls.spark_master),
            jars_dir=Path(env["NEXGEN_JARS_DIR"]) if env.get("NEXGEN_JARS_DIR") else default_jars_dir(),
            s3=s3,
            spark_conf=spark_conf_from_json(env.get("NEXGEN_SPARK_CONF"), "NEXGEN_SPARK_CONF"),
            ship_s3a_jars=ship_s3a_jars_from(env.get("NEXGEN_SHIP_S3A_JARS")),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
