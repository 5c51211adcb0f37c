"""A throwaway PostgreSQL server as Airflow's metadata DB, for the tests and for `make airflow` with
NEXGEN_AIRFLOW_DB=postgres: Debian's server binaries (scripts/setup.sh installs them), a fresh cluster in a temporary
folder, on 127.0.0.1 and a free port, with a password of its own; removed when stopped."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from nexgen_etl.dev.local_services import free_port
from nexgen_etl.run.processes import die_with_parent, process_alive

PG_MAJOR = "15"  # Debian bookworm's PostgreSQL: the postgresql-15 package scripts/setup.sh installs (change both)
DEBIAN_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")  # Debian keeps the server binaries off PATH
RUN_AS = "postgres"  # the server refuses to run as root; Debian's package creates this account
SETUP_HINT = "scripts/setup.sh --with-postgres installs Debian's postgresql-15"
PREFIX = "nexgen-pg-"  # the clusters' folders in the temporary directory


def server_bin() -> Path:
    """The folder of initdb and postgres: Debian's for PG_MAJOR, else wherever initdb is on PATH."""
    if (DEBIAN_BIN / "initdb").exists():
        return DEBIAN_BIN
    if found := shutil.which("initdb"):
        return Path(found).resolve().parent
    raise RuntimeError(f"PostgreSQL server not found (no {DEBIAN_BIN / 'initdb'}, no initdb on PATH): {SETUP_HINT}")


def sweep_stale_clusters(older_than: float = 600.0) -> list[Path]:
    """Remove the folders of clusters whose server is gone (a parent killed before it could stop them: the server
    died with it). A folder without a server PID file counts only when older than `older_than` seconds, so that a
    cluster another process is still creating is left alone."""
    removed = []
    for d in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            pid = int((d / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
            stale = not process_alive(pid)
        except (OSError, ValueError):
            try:
                stale = time.time() - d.stat().st_mtime > older_than
            except OSError:
                continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _server_account() -> pwd.struct_passwd | None:
    """Who runs initdb and the server: this user, or Debian's `postgres` account when this is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        raise RuntimeError(f"running as root and there is no `{RUN_AS}` account to run PostgreSQL as: "
                           f"{SETUP_HINT} (which creates it)") from None


class LocalPostgres:
    """initdb in a temporary folder, `postgres` on 127.0.0.1:<free port>, one database; `url` is its SQLAlchemy URL.

    The server is a child of this process (it dies with it, SIGKILL, if this process dies first) in a session of its
    own; `stop()` shuts it down (fast: open connections are cut) and removes the folder."""

    def __init__(self, database: str = "airflow", user: str = "nexgen", port: int | None = None,
                 log_path: str | Path | None = None, start_timeout: float = 90.0) -> None:
        self.database, self.user = database, user
        self.port = port or free_port()
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.password = secrets.token_urlsafe(18)  # URL-safe: goes into the URL as is
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL with the psycopg2 driver (Airflow derives postgresql+asyncpg from it for its async engine)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _as_server(self, account: pwd.struct_passwd | None) -> dict:
        ids = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
        return {**ids, "cwd": self.root, "stdin": subprocess.DEVNULL}

    def start(self) -> "LocalPostgres":
        bin_dir, account = server_bin(), _server_account()
        sweep_stale_clusters()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        try:
            self._init_and_start(bin_dir, account)
        except BaseException:
            self.stop()
            raise
        return self

    def _init_and_start(self, bin_dir: Path, account: pwd.struct_passwd | None) -> None:
        data, pwfile = self.root / "data", self.root / "password"
        pwfile.write_text(self.password)
        if account:
            for p in (self.root, pwfile):
                os.chown(p, account.pw_uid, account.pw_gid)
        # C locale (any machine has it), UTF-8, password login only; --no-sync: the cluster is thrown away anyway
        done = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", self.user, f"--pwfile={pwfile}",
                               "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"],
                              capture_output=True, text=True, **self._as_server(account))
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            # loopback TCP only (no Unix socket); durability off, since nothing outlives the cluster
            self.proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
                 "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
                **self._as_server(account))
        finally:
            if self.log_path:
                log.close()
        self._wait_ready()
        self._create_database()

    def connect(self, database: str | None = None):
        """A psycopg2 connection to `database` (default: the one created for the caller)."""
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                dbname=database or self.database, connect_timeout=5)

    def _wait_ready(self) -> None:
        import psycopg2

        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self.proc.returncode} at start"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                self.connect("postgres").close()
                return
            except psycopg2.OperationalError:  # not listening yet, or "the database system is starting up"
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not accept connections on 127.0.0.1:{self.port} within "
                                       f"{self.start_timeout:.0f}s") from None
                time.sleep(0.2)

    def _create_database(self) -> None:
        conn = self.connect("postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (PostgreSQL's fast shutdown), SIGKILL after `timeout`; then the cluster's folder goes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
