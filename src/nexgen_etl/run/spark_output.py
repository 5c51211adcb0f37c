"""spark-submit's output, relayed as it comes: the lines that matter to the log, Spark's progress bar to a terminal."""

from __future__ import annotations

import logging
from collections import deque

log = logging.getLogger("nexgen_etl")


def relay_spark_output(stream, console=None, keep: int = 40) -> list[str]:
    """Read spark-submit's merged output as it comes. Lines that matter (the job's own, errors) go to the log
    at once; carriage-return frames (Spark's console progress bar) go to `console` when given, else nowhere.
    Returns the last `keep` lines, for the error message of a failed submit."""
    tail: deque[str] = deque(maxlen=keep)
    buf = b""

    def line(text: str) -> None:
        tail.append(text)
        if "nexgen-etl" in text or "ERROR" in text or "Error" in text or "Traceback" in text:
            log.info("spark: %s", text)

    while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
        buf += chunk
        while True:
            cut = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                break
            piece, sep, buf = buf[:cut].decode(errors="replace"), buf[cut:cut + 1], buf[cut + 1:]
            if sep == b"\r" and (piece.startswith("[Stage") or not piece.strip()):
                if console is not None:  # a progress frame, or the blank that clears it
                    console.write("\r" + piece + ("" if piece.strip() else "\r"))
                    console.flush()
                continue
            if piece.startswith("[Stage"):  # a frame the next line was printed straight after
                piece = piece.split("]", 1)[-1]
                if not piece.strip():
                    continue
            line(piece)
    if buf:
        line(buf.decode(errors="replace"))
    return list(tail)
