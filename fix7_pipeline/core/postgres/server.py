"""The rehearsal server and the one host guard.

Every connection the pipeline opens — psycopg, SQLAlchemy (for Great Expectations)
or a libpq client tool (psql, pg_dump, pg_restore) — is granted by
`RehearsalServer.grant`, which refuses any host that is not the rehearsal server
or that matches a production pattern before a socket is opened, and records
what it granted in the connection ledger that goes into the evidence.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from urllib.parse import quote

import psycopg

from ..shared.errors import Fix7Error, HostRefused, ServerFault
from .embedded import start_embedded
from .hosts import HostPolicy
from .ledger import ConnectionLedger
from .pg_tools import bin_dir, pg_tool  # noqa: F401 - the server layer's callers take them from here too
from .server_urls import PASSWORD_ENV, THROWAWAY_KEY_ENV, parse_server_url


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
        A caller that already read its secrets (core.run.stage_run.ServerSource) passes environ=False.
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

    def tool_env(self, database: str, login: Login, purpose: str, client: str, sessions: int = 1) -> dict:
        """Environment for a wheel client tool that opens `sessions` connections (each one in the ledger); the
        password travels in PGPASSWORD, never argv."""
        for _ in range(sessions - 1):
            self.grant(database, login, purpose, client, session=RESTORE)
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
