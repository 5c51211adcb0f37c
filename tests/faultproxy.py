"""A small HTTP reverse proxy in front of the S3 endpoint that injects S3 faults: 503 SlowDown answers, other S3
error answers (e.g. 400 ExpiredToken, as S3 answers a request signed with an expired session token), connection
resets, stalls and bodies cut short, on every n-th request that matches a method (and optionally a key substring, a User-Agent or a
session token), optionally only for the first `limit` matches (a burst)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
MESSAGES = {"ExpiredToken": "The provided token has expired.",
            "InvalidToken": "The provided token is malformed or otherwise invalid.",
            "AccessDenied": "Access Denied"}


def s3_error(code: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{MESSAGES.get(code, code)}</Message><RequestId>FAULTPROXY</RequestId></Error>").encode()


def age_in_listing(xml: bytes, key: str, seconds: int) -> bytes:
    """A ListObjectsV2 answer with the LastModified of `key` moved `seconds` back."""
    import re
    from datetime import datetime, timedelta
    from xml.sax.saxutils import escape

    pattern = re.compile(rb"(<Key>" + re.escape(escape(key).encode()) + rb"</Key>\s*<LastModified>)([^<]+)(<)")

    def older(m: re.Match) -> bytes:
        when = datetime.fromisoformat(m.group(2).decode().replace("Z", "+00:00")) - timedelta(seconds=seconds)
        return m.group(1) + when.strftime("%Y-%m-%dT%H:%M:%S.000Z").encode() + m.group(3)

    return pattern.sub(older, xml)


@dataclass
class FaultRule:
    # "slowdown" (503), "error" (status + S3 error code), "reset" (close the socket), "stall" (wait, close),
    # "truncate" (the real answer's headers, then half of its body, then close: a body cut short),
    # "age" (the real answer, with the LastModified of the object named by `key` in a listing moved `seconds` back:
    # an object that became visible long after it was written, as S3 shows a late or delayed upload)
    kind: str
    methods: tuple[str, ...] = ("GET", "PUT", "HEAD", "POST", "DELETE")
    every: int = 3  # fault on every n-th matching request (1: always — a persistent fault)
    path_contains: str = ""
    agent: str = ""  # only requests whose User-Agent contains this (e.g. "Boto3", "aws-sdk-java" for S3A)
    token: str = ""  # only requests signed with this session token (X-Amz-Security-Token)
    limit: int = 0  # inject at most this many times (0: no limit)
    status: int = 400  # kind "error": the HTTP status and S3 error code answered
    code: str = "ExpiredToken"
    key: str = ""  # kind "age": the object whose LastModified is moved back
    seconds: int = 0
    seen: int = 0
    injected: int = 0
    times: list[float] = field(default_factory=list)  # monotonic time of each injection (how long a burst lasted)


@dataclass
class FaultProxy:
    upstream: str
    rules: list[FaultRule] = field(default_factory=list)
    requests: int = 0

    def start(self) -> "FaultProxy":
        proxy = self
        up = urlparse(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _fault(self) -> FaultRule | None:
                for rule in proxy.rules:
                    if rule.kind != "age" and (self.command in rule.methods and rule.path_contains in self.path
                            and rule.agent in (self.headers.get("User-Agent") or "")
                            and (not rule.token or self.headers.get("X-Amz-Security-Token") == rule.token)):
                        rule.seen += 1
                        if rule.seen % rule.every == 0 and not (rule.limit and rule.injected >= rule.limit):
                            rule.injected += 1
                            rule.times.append(time.monotonic())
                            return rule
                return None

            def _handle(self):
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                rule = self._fault()
                if rule and rule.kind in {"slowdown", "error"}:
                    status, data = (503, SLOWDOWN) if rule.kind == "slowdown" else (rule.status, s3_error(rule.code))
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                if rule and rule.kind in {"reset", "stall"}:
                    if rule.kind == "stall":
                        time.sleep(2)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection"}}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                for age in proxy.rules:  # every matching one: several objects may be late
                    if age.kind == "age" and self.command in age.methods and age.path_contains in self.path:
                        aged = age_in_listing(data, age.key, age.seconds)
                        age.seen += 1
                        age.injected += aged != data
                        data = aged
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if rule and rule.kind == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                elif self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
