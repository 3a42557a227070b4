"""A throwaway PostgreSQL server for the tests and benchmarks: initdb in a temporary folder, one
server on a free loopback port, stopped and removed after. Postgres refuses to run as root, so as
root the server runs as the `postgres` user the Debian package creates (or `nobody`)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "synthgen"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`start()` makes a cluster whose superuser USER logs in with `password` over TCP only
    (scram-sha-256), `stop()` ends the server and removes its folder."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.bin = binaries()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found")
        self.root = Path(tempfile.mkdtemp(prefix="synthgen-pg-"))
        self.port = _free_port()
        self.runas: dict = {}
        if os.geteuid() == 0:
            name = "postgres"
            try:
                pwd.getpwnam(name)
            except KeyError:
                name = "nobody"
            self.runas = {"user": name}
            shutil.chown(self.root, user=name)

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            cwd=self.root,
            **self.runas,
        )

    def start(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.runas:
            shutil.chown(pwfile, user=self.runas["user"])
        data = self.root / "data"
        self._run(
            "initdb", "-D", str(data), "-U", USER, "--auth=scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(data), "-l", str(self.root / "log"), "-o", options, "-w",
            "-t", "120", "start",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # pg_ctl -w waited for it; the port answers too
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not listen on port {self.port}")

    def url(self, db: str = "postgres", password: bool = False) -> str:
        auth = f"{USER}:{self.password}" if password else USER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
