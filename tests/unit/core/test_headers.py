import gzip

import pytest

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.headers import inspect_header

C = load_contract()


@pytest.mark.parametrize(
    "data, key, header, reason",
    [
        pytest.param(b"date,store_id,sku,units_sold,unit_price,promo\n1,2", "a.csv",
                     ["date", "store_id", "sku", "units_sold", "unit_price", "promo"], None, id="plain"),
        pytest.param(b"\xef\xbb\xbfsku,date,store_id,units_sold\r\n", "a.csv", ["sku", "date", "store_id", "units_sold"],
                     None, id="bom-crlf-reordered"),
        pytest.param(b"", "a.csv", None, "empty_file", id="zero-bytes"),
        pytest.param(b"date;store_id;sku;units_sold\n", "a.csv", None, "missing_columns", id="wrong-delimiter"),
        pytest.param(b"date,store_id,sku,sku,units_sold\n", "a.csv", None, "duplicate_header", id="dup-header"),
        pytest.param(b"date,store_id,units_sold\n", "a.csv", None, "missing_columns", id="missing-required"),
        pytest.param(b"\x00\x01\x02binary", "a.csv", None, "binary_file", id="binary"),
        pytest.param(b"not gzip at all", "a.csv.gz", None, "corrupt_compression", id="corrupt-gz"),
        pytest.param(gzip.compress(b"date,store_id,sku,units_sold\n2024-01-01,S1,K1,3\n")[:40], "a.csv.gz",
                     ["date", "store_id", "sku", "units_sold"], None, id="gz-prefix"),
    ],
)
def test_inspect_header(data, key, header, reason):
    got, why = inspect_header(data, key, C)
    assert got == header
    assert (why or {}).get("reason") == reason


def test_verify_gzip_accepts_sound_and_rejects_truncated_or_corrupt():
    from nexgen_etl.core.headers import verify_gzip

    data = gzip.compress(b"date,store_id,sku,units_sold\n" + b"2024-01-01,S1,K1,3\n" * 50000)
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert verify_gzip(iter(chunks)) is None
    assert verify_gzip(iter(chunks[:-1]))["reason"] == "corrupt_compression"
    assert "truncated" in verify_gzip(iter(chunks[:-1]))["detail"]
    assert verify_gzip(iter([b"garbage" + data]))["reason"] == "corrupt_compression"
