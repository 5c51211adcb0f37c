"""The pipeline's own S3 calls ride out what botocore does not retry: bodies cut short or reset after the headers
arrived, and a burst of dropped connections on the preflight's first listing. Each bound is asserted by counting
the requests the fault proxy saw, not by wall time."""

from __future__ import annotations

import os

import pytest

from nexgen_etl.core.settings import S3Settings, Settings
from nexgen_etl.core.storage import BODY_ATTEMPTS, S3Store, s3_client
from nexgen_etl.run.preflight import PREFLIGHT_ATTEMPTS, SetupError, check_s3
from tests.faultproxy import FaultProxy, FaultRule

BODY = os.urandom(3 << 20)  # 3 MiB: iter_bytes reads it in several chunks


@pytest.fixture()
def proxied(moto_server, credentials, s3, buckets):
    """The loading bucket with one object, reached through a fault proxy (rules set by each test)."""
    S3Store(buckets[1], "", s3).put_bytes("data/x.bin", BODY)
    proxy = FaultProxy(moto_server.url, []).start()
    client = s3_client(S3Settings(endpoint_url=proxy.url, path_style=True), credentials)
    yield proxy, S3Store(buckets[1], "", client), buckets
    proxy.stop()


@pytest.mark.parametrize("read", [
    pytest.param(lambda store: store.get_bytes("data/x.bin"), id="get_bytes"),
    pytest.param(lambda store: store.get_versioned("data/x.bin")[0], id="get_versioned"),
    pytest.param(lambda store: b"".join(store.iter_bytes("data/x.bin", chunk=1 << 18)), id="iter_bytes"),
])
def test_a_body_cut_short_is_read_again(proxied, read) -> None:
    """Catches: `IncompleteRead(1892 bytes read, 1893 more expected)` failing the run (tried: without the retry in
    S3Store._get and iter_bytes each of these raised)."""
    proxy, store, _ = proxied
    rule = FaultRule("truncate", ("GET",), every=1, path_contains="data/x.bin", limit=2)
    proxy.rules.append(rule)
    assert read(store) == BODY
    assert rule.injected == 2 and rule.seen == 3  # two cut short, the third whole


def test_the_head_bytes_are_read_again(proxied) -> None:
    proxy, store, _ = proxied
    rule = FaultRule("truncate", ("GET",), every=1, path_contains="data/x.bin", limit=1)
    proxy.rules.append(rule)
    assert store.get_head_bytes("data/x.bin", 4096) == BODY[:4096] and rule.injected == 1


def test_a_persistent_cut_fails_after_the_stated_attempts(proxied) -> None:
    """Catches: an unbounded retry loop (or one bound by time rather than by attempts)."""
    proxy, store, _ = proxied
    rule = FaultRule("truncate", ("GET",), every=1, path_contains="data/x.bin")
    proxy.rules.append(rule)
    with pytest.raises(Exception):
        store.get_bytes("data/x.bin")
    assert rule.seen == BODY_ATTEMPTS


def test_preflight_rides_out_a_burst_of_resets_on_the_first_listing(proxied, credentials) -> None:
    """Catches: the preflight's 2 attempts (`Connection was closed before we received a valid response ...
    list-type=2&prefix=&max-keys=1` failed the run on a burst of 3 resets; tried)."""
    proxy, _, (raw, out) = proxied
    rule = FaultRule("reset", ("GET",), every=1, path_contains="list-type=2", limit=3)
    proxy.rules.append(rule)
    settings = Settings(raw_url=f"s3://{raw}/", output_url=f"s3://{out}/",
                        s3=S3Settings(endpoint_url=proxy.url, path_style=True))
    check_s3(settings, credentials, "test")
    assert rule.injected == 3

    persistent = FaultRule("reset", ("GET",), every=1, path_contains="list-type=2")
    proxy.rules[:] = [persistent]
    with pytest.raises(SetupError, match=f"dropped {PREFLIGHT_ATTEMPTS} connections in a row"):
        check_s3(settings, credentials, "test")
    assert persistent.seen == PREFLIGHT_ATTEMPTS
