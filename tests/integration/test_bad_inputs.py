"""The catalogue of bad inputs, run through the real pipeline in one batch (moto S3 server, real Spark over S3A):
each case is one raw object with its expected outcome — rows quarantined with a reason, the file quarantined
with a reason while the rest of the batch goes on, or the object ignored — and exact row accounting."""

from __future__ import annotations

import gzip
import io
import json
import uuid

import pyarrow.parquet as pq
import pytest

from nexgen_etl.core.publish import read_catalog
from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.local_services import create_buckets
from tests.integration.test_exactly_once import make_pipeline, run_until_empty

H = "date,store_id,sku,units_sold,unit_price,promo"


def rows(store, n=3, start=1):
    return "\n".join(f"2024-01-{d:02d},{store},SKU-1,{d},2.50,0" for d in range(start, start + n))


# id → (key, bytes, expected). expected: {"file": reason} | {"ignored": True} |
#        {"read", "out", "q": {reason: n}} (rows quarantined by primary reason; out = rows published)
CASES: dict[str, tuple[str, bytes, dict]] = {
    "zero-byte": ("bad/zero.csv", b"", {"file": "empty_file"}),
    "header-only": ("bad/header_only.csv", (H + "\n").encode(), {"read": 0, "out": 0, "q": {}}),
    "no-header": ("bad/no_header.csv", (rows("S02") + "\n").encode(), {"file": "missing_columns"}),
    "wrong-delimiter": ("bad/semicolon.csv", (H.replace(",", ";") + "\n" + rows("S03").replace(",", ";")).encode(),
                        {"file": "missing_columns"}),
    "extra-columns": ("bad/extra.csv", (H + ",region\n" + "\n".join(r + ",EU" for r in rows("S04").split("\n"))).encode(),
                      {"read": 3, "out": 3, "q": {}}),
    "missing-required-column": ("bad/missing_col.csv", b"date,store_id,sku\n2024-01-01,S05,SKU-1\n",
                                {"file": "missing_columns"}),
    "reordered-columns": ("bad/reordered.csv",
                          b"sku,promo,units_sold,store_id,unit_price,date\nSKU-1,0,4,S06,2.5,2024-01-01\n",
                          {"read": 1, "out": 1, "q": {}}),
    "duplicated-header": ("bad/dup_header.csv", (H + ",sku\n" + rows("S07")).encode(), {"file": "duplicate_header"}),
    "utf8-bom": ("bad/bom.csv", b"\xef\xbb\xbf" + (H + "\n" + rows("S08")).encode(), {"read": 3, "out": 3, "q": {}}),
    "latin1-bytes": ("bad/latin1.csv", (H + "\n" + rows("S09", 2) + "\n2024-01-03,Z\xfcrich,SKU-1,1,1,0\n").encode("latin-1"),
                     {"read": 3, "out": 2, "q": {"invalid_encoding": 1}}),
    "invalid-utf8": ("bad/invalid_utf8.csv", (H + "\n" + rows("S10", 2) + "\n").encode() + b"2024-01-03,S10,SKU-\xff\xfe,1,1,0\n",
                     {"read": 3, "out": 2, "q": {"invalid_encoding": 1}}),
    "crlf": ("bad/crlf.csv", (H + "\r\n" + rows("S11").replace("\n", "\r\n") + "\r\n").encode(),
             {"read": 3, "out": 3, "q": {}}),
    "mixed-line-endings": ("bad/mixed_eol.csv", (H + "\r\n" + "2024-01-01,S12,SKU-1,1,1,0\n2024-01-02,S12,SKU-1,2,1,0\r\n"
                                                 "2024-01-03,S12,SKU-1,3,1,0").encode(), {"read": 3, "out": 3, "q": {}}),
    "quoted-comma-and-quotes": ("bad/quoted.csv", (H + '\n2024-01-01,S13,"SKU, ""big""",1,1,0\n').encode(),
                                {"read": 1, "out": 1, "q": {}}),
    "quoted-newline": ("bad/quoted_newline.csv", (H + '\n2024-01-01,S14,"SKU\n2",1,1,0\n2024-01-02,S14,SKU-1,1,1,0\n').encode(),
                       {"read": 3, "out": 1, "q": {"malformed_row": 2}}),
    "unterminated-quote": ("bad/unterminated.csv", (H + '\n2024-01-01,S15,SKU-1,1,1,0\n2024-01-02,S15,"SKU-2,1,1,0\n').encode(),
                           {"read": 2, "out": 1, "q": {"malformed_row": 1}}),
    "truncated-last-line": ("bad/truncated.csv", (H + "\n" + rows("S16", 2) + "\n2024-01-03,S16,SK").encode(),
                            {"read": 3, "out": 2, "q": {"malformed_row": 1}}),
    "thousands-and-currency": ("bad/numbers.csv", (H + '\n2024-01-01,S17,SKU-1,"1,234",2.5,0\n2024-01-02,S17,SKU-1,3,$2.50,0\n'
                                                   "2024-01-03,S17,SKU-1,3,2.5,0\n").encode(),
                               {"read": 3, "out": 1, "q": {"unparseable:units_sold": 1, "unparseable:unit_price": 1}}),
    "missing-markers": ("bad/missing_markers.csv", (H + "\n2024-01-01,S18,SKU-1,NaN,1,0\n2024-01-02,S18,SKU-1,null,1,0\n"
                                                    "2024-01-03,S18,SKU-1,N/A,1,0\n2024-01-04,S18,SKU-1,-,1,0\n"
                                                    "2024-01-05,S18,SKU-1,5,N/A,-\n").encode(),
                        {"read": 5, "out": 1, "q": {"missing:units_sold": 4}}),
    "undeclared-date-format": ("bad/date_format.csv", (H + "\n2024/01/05,S19,SKU-1,1,1,0\n2024-01-06,S19,SKU-1,1,1,0\n").encode(),
                               {"read": 2, "out": 1, "q": {"unparseable:date": 1}}),
    "dates-out-of-range": ("bad/date_range.csv", (H + "\n1899-12-31,S20,SKU-1,1,1,0\n2999-01-01,S20,SKU-1,1,1,0\n"
                                                  "2024-01-01,S20,SKU-1,1,1,0\n").encode(),
                           {"read": 3, "out": 1, "q": {"below_min:date": 1, "above_max:date": 1}}),
    "negative-and-absurd": ("bad/absurd.csv", (H + "\n2024-01-01,S21,SKU-1,-5,1,0\n2024-01-02,S21,SKU-1,99999999,1,0\n"
                                               "2024-01-03,S21,SKU-1,3,-1,0\n2024-01-04,S21,SKU-1,3,1,7\n"
                                               "2024-01-05,S21,SKU-1,3,1,1\n").encode(),
                            {"read": 5, "out": 1, "q": {"below_min:units_sold": 1, "above_max:units_sold": 1,
                                                        "below_min:unit_price": 1, "not_allowed:promo": 1}}),
    "corrupt-gzip": ("bad/corrupt.csv.gz", gzip.compress((H + "\n" + rows("S22", 50)).encode())[:120],
                     {"file": "corrupt_compression"}),
    "gzip-ok": ("bad/fine.csv.gz", gzip.compress((H + "\n" + rows("S23")).encode()), {"read": 3, "out": 3, "q": {}}),
    "binary-as-csv": ("bad/picture.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", {"file": "undecodable_header"}),
    "folder-marker": ("bad/folder/", b"", {"ignored": True}),
    "not-a-csv-name": ("bad/notes.txt", b"hello", {"ignored": True}),
    "spaces-and-non-ascii-key": ("bad/dir with space/fïlé ünïcode.csv", (H + "\n" + rows("S24")).encode(),
                                 {"read": 3, "out": 3, "q": {}}),
    "very-wide-row": ("bad/wide.csv", (H + "\n" + rows("S25", 1) + "\n2024-01-02,S25,SKU-1,1,1,0" + ",x" * 5000 + "\n").encode(),
                      {"read": 2, "out": 1, "q": {"malformed_row": 1}}),
    "exact-and-key-duplicates": ("bad/dups.csv", (H + "\n2024-01-01,S26,SKU-1,1,1,0\n2024-01-01,S26,SKU-1,1,1,0\n"
                                                  "2024-01-01, s26 ,sku-1,9,1,0\n").encode(),
                                 {"read": 3, "out": 1, "q": {}, "exact": 1, "key": 1}),
}


@pytest.fixture(scope="module")
def batch(s3a_spark, moto_server, credentials, tmp_path_factory):
    from nexgen_etl.core.settings import S3Settings
    from nexgen_etl.core.storage import s3_client

    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    raw, out = f"bad-raw-{uuid.uuid4().hex[:6]}", f"bad-out-{uuid.uuid4().hex[:6]}"
    create_buckets(s3, buckets=(raw, out))
    for key, data, _ in CASES.values():
        s3.put_object(Bucket=raw, Key=key, Body=data)
    p = make_pipeline(s3, raw, out, tmp_path_factory.mktemp("bad") / "state.json")
    results = run_until_empty(p, s3a_spark)
    store = S3Store(out, "", s3)
    cat = read_catalog(store)
    manifest = json.loads(store.get_bytes(f"_manifests/{cat.batches[0]}.json"))
    quarantine = [pq.read_table(io.BytesIO(store.get_bytes(f))).to_pylist() for f in cat.files("quarantine")]
    return {"results": results, "manifest": manifest, "catalog": cat,
            "quarantine": [r for part in quarantine for r in part]}


def test_one_batch_for_the_whole_catalogue(batch):
    assert [r["status"] for r in batch["results"]] == ["committed", "nothing_new"]
    assert len(batch["catalog"].batches) == 1


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(batch, case):
    key, _, want = CASES[case]
    acc = batch["manifest"]["accounting"].get(key)
    if want.get("ignored"):
        assert acc is None and key not in {i["key"] for i in batch["manifest"]["inputs"]}
        return
    assert acc is not None, f"{key} was not in the batch"
    assert acc["balanced"]
    if "file" in want:
        assert acc["file_rejected"]["reason"] == want["file"], acc["file_rejected"]
        assert acc["rows_read"] == 0 and acc["rows_out"] == 0
        records = [r for r in batch["quarantine"] if r["_source_key"] == key]
        assert [r["reason"] for r in records] == [f"file:{want['file']}"]  # one record for the whole file
        assert records[0]["raw_values"]  # the detail of why
        return
    assert acc["file_rejected"] is None
    assert (acc["rows_read"], acc["rows_out"]) == (want["read"], want["out"]), acc
    assert acc["quarantine_reasons"] == want["q"]
    assert acc["rows_quarantined"] == sum(want["q"].values())
    assert acc["duplicates_exact"] == want.get("exact", 0) and acc["duplicates_key"] == want.get("key", 0)
    mine = [r for r in batch["quarantine"] if r["_source_key"] == key and not r["reason"].startswith("file:")]
    assert len(mine) == acc["rows_quarantined"]
    assert all(r["reason"] and r["raw_values"] for r in mine)
