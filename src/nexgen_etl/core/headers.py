"""Header inspection of raw files before Spark reads them: one ranged GET per file, decided at extract time."""

from __future__ import annotations

import csv
import io
import zlib

from nexgen_etl.core.contract import Contract

HEAD_BYTES = 64 * 1024


def first_line(data: bytes, gz: bool) -> bytes | None:
    """The first line of a file from its first bytes (decompressing a gzip prefix). None when empty."""
    if gz:
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        except zlib.error as exc:
            raise ValueError(f"corrupt gzip: {exc}") from None
    if not data.strip(b"\r\n"):
        return None
    return data.split(b"\n", 1)[0].rstrip(b"\r")


def inspect_header(data: bytes, key: str, contract: Contract) -> tuple[list[str] | None, dict | None]:
    """(header, None) when the file can be read as the contract says, else (None, {reason, detail})."""
    try:
        line = first_line(data, key.endswith(".gz"))
    except ValueError as exc:
        return None, {"reason": "corrupt_compression", "detail": str(exc)}
    if line is None:
        return None, {"reason": "empty_file", "detail": "0 bytes or no header line"}
    if b"\x00" in line:
        return None, {"reason": "binary_file", "detail": "NUL bytes in the first line"}
    try:
        text = line.decode(contract.csv.encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        return None, {"reason": "undecodable_header", "detail": f"{contract.csv.encoding}: {exc}"}
    text = text.lstrip("\ufeff")
    if contract.csv.header is False:
        return list(contract.csv.names) or contract.raw_inputs, None
    header = [h.strip() for h in next(csv.reader(io.StringIO(text), delimiter=contract.csv.delimiter,
                                                 quotechar=contract.csv.quote))]
    if contract.csv.header == "positional":
        # the header line is checked for its length only: its names may repeat or say nothing; the contract names
        # the fields by position
        names = list(contract.csv.names) or contract.raw_inputs
        if len(header) != len(names):
            return None, {"reason": "header_mismatch",
                          "detail": f"the header has {len(header)} fields, the contract names {len(names)} by "
                                    f"position; header {header[:20]}"}
        return names, None
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        return None, {"reason": "duplicate_header",
                      "detail": f"repeated column name(s) {dup} (csv.header: positional reads such a file)"}
    missing = [r for r in contract.required_raw if r not in header]
    if missing:
        return None, {"reason": "missing_columns",
                      "detail": f"missing required {missing}; header has {header[:20]}"}
    u = contract.unpivot
    if u is not None and not u.value_columns(header):
        return None, {"reason": "missing_columns",
                      "detail": f"no column matches unpivot.pattern {u.pattern!r}; header has {header[:20]}"}
    return header, None


def verify_gzip(chunks) -> dict | None:
    """Decompress a whole gzip stream (bounded memory) so that a truncated or corrupt file is rejected at
    extract, instead of failing the Spark job for the whole batch. None when it is sound."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            d.decompress(chunk, 1 << 20)
            while d.unconsumed_tail:
                d.decompress(d.unconsumed_tail, 1 << 20)
        d.flush()
    except zlib.error as exc:
        return {"reason": "corrupt_compression", "detail": f"corrupt gzip: {exc}"}
    if not d.eof:
        return {"reason": "corrupt_compression", "detail": "truncated gzip (stream ends before its trailer)"}
    return None
