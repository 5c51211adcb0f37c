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


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[3] / "examples" / "contracts"


@pytest.mark.parametrize(
    "contract, data, header, reason",
    [
        pytest.param("meter_export", b"meter,timestamp,value,value,flag\n", ["meter", "epoch_ms", "value_kwh",
                     "value_tariff", "flag"], None, id="positional-repeated-names"),
        pytest.param("meter_export", b"meter,timestamp,value,value\n", None, "header_mismatch",
                     id="positional-one-field-short"),
        pytest.param("yearly_wide", b"Country Name,2000,2001,Indicator\n", ["Country Name", "2000", "2001", "Indicator"],
                     None, id="unpivot-pattern"),
        pytest.param("yearly_wide", b"Country Name,Indicator\n", None, "missing_columns", id="unpivot-no-value-column"),
        pytest.param("yearly_wide", b"Land,2000\n", None, "missing_columns", id="unpivot-id-missing"),
        pytest.param("monthly_prices", b"Year;commodity;price\n", None, "missing_columns", id="a-time-part-missing"),
        pytest.param("monthly_prices", b"Year;Month;commodity;price\n", ["Year", "Month", "commodity", "price"], None,
                     id="time-parts"),
    ],
)
def test_inspect_header_of_the_new_shapes(contract, data, header, reason):
    """Catches a positional header checked by name (repeated names rejected) or not at all (a short header read),
    an unpivot file without value columns read as zero cells, and a time part that may be absent."""
    got, why = inspect_header(data, "a.csv", load_contract(EXAMPLES / f"{contract}.yaml"))
    assert got == header
    assert (why or {}).get("reason") == reason
