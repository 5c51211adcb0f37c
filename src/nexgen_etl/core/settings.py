"""Run settings (locations, endpoint, Spark master, jars) read from the environment; secrets as their own type."""

from __future__ import annotations

import hmac
import json
import os
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


def spark_conf_from_json(text: str | None, where: str) -> dict[str, str]:
    """A team's own Spark conf, as a JSON object of strings (merged over the product's conf by the submit spec)."""
    if not text:
        return {}
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(conf, dict) or not all(isinstance(k, str) and k.startswith("spark.") for k in conf):
        raise ValueError(f"{where}: must be a JSON object of Spark properties, e.g. "
                         '{"spark.executor.memory": "4g"}')
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in conf.items()}


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
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
