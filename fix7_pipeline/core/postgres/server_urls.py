"""Rehearsal server URLs: read once, the password never stored (and the environment variables that carry it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..shared.errors import EXIT_USAGE, Fix7Error
from .ledger import now_utc

PASSWORD_ENV = "FIX7_REHEARSAL_SERVER_PASSWORD"
# A secret of the process that runs the rehearsal (and of every step process it starts), from which the
# throwaway roles' passwords on an external server are derived when the admin login has no password.
THROWAWAY_KEY_ENV = "FIX7_THROWAWAY_KEY"

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
             "client": "dagster (sqlalchemy)", "opened_at": now_utc()}
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
