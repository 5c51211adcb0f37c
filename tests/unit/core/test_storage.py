"""boto3 clients share one model loader per process, never credentials."""

from __future__ import annotations

from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret
from nexgen_etl.core.storage import s3_client

S3 = S3Settings(endpoint_url="http://127.0.0.1:9", path_style=True)


def access_key(client) -> str:
    return client._request_signer._credentials.get_frozen_credentials().access_key


def test_clients_share_the_model_loader_not_the_credentials(monkeypatch):
    a = s3_client(S3, AwsCredentials("AKIAFIRST", Secret("s1")))
    b = s3_client(S3, AwsCredentials("AKIASECOND", Secret("s2")))
    assert (access_key(a), access_key(b)) == ("AKIAFIRST", "AKIASECOND")
    # without explicit credentials each client reads the default chain when it is made (here: the environment)
    for key in ("AKIAENVONE", "AKIAENVTWO"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        assert access_key(s3_client(S3)) == key
    assert a.meta.service_model is not None and a._loader is b._loader
    assert a.meta.endpoint_url == "http://127.0.0.1:9" and a.meta.config.s3["addressing_style"] == "path"
