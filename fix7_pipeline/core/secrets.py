"""Secret detection inside PostgreSQL: what a sanitized clone must not carry.

Rules are PostgreSQL regular expressions (POSIX ARE), evaluated in the server: one SELECT per table
tests every text, varchar, char, json and jsonb column (arrays and domains of them included) against
every rule and returns only where a match is (row key, column, rule) and a salted fingerprint of the
matched text. Values never leave the server: a finding carries no value, no prefix, no suffix.
Contracted sha256 columns are data and are not pattern-scanned.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import psycopg
from psycopg import sql as psql

from .contract import Contract
from .model import Finding
from .proof_sql import as_text

ROWS_PER_FINDING_KIND = 20


def _ci(word: str) -> str:
    """A case-insensitive word inside a case-sensitive ARE."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


_ASSIGN_KEYS = "|".join(_ci(w) for w in ("password", "passwd", "secret", "token", "api_key", "apikey",
                                             "access_key", "client_secret"))
_VALUE_CH = r"""[^[:space:]\\"',;&<>{}]"""
_QUOTES = r"""[\\"']{0,3}"""


@dataclass(frozen=True)
class SecretRule:
    name: str
    pattern: str          # PostgreSQL ARE
    case_insensitive: bool = False
    description: str = ""
    # Lower-case LIKE fragments one of which every match contains ('%' between parts = in this order);
    # () = no gate. A gate may let through more than the rule, never less.
    gates: tuple[str, ...] = ()

    @property
    def like_gates(self) -> list[str] | None:
        """LIKE patterns tested on the lower-cased value before the regex: cheap, and never stricter."""
        return [f"%{g}%" for g in self.gates] or None

    @property
    def flags(self) -> str:
        return "i" if self.case_insensitive else ""

    @property
    def operator(self) -> str:
        return "~*" if self.case_insensitive else "~"


SECRET_RULES: tuple[SecretRule, ...] = (
    SecretRule("connection_string_password",
               r"(postgres|postgresql|mysql|mariadb|mongodb(\+srv)?|rediss?|amqps?)://[^[:space:]:/@\"'<>]+:"
               r"[^[:space:]/@\"'<>]+@"
               r"|\m(host|hostaddr|dbname|user)[[:space:]]*=[^=]{0,200}\mpassword[[:space:]]*=[[:space:]]*[^[:space:]]"
               r"|\mpassword[[:space:]]*=[[:space:]]*[^[:space:]'\"]+[^=]{0,200}\m(host|hostaddr|dbname|user)"
               r"[[:space:]]*=",
               True, "a connection string or libpq conninfo with a password",
               ("://%@", "password")),
    SecretRule("private_key", r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----", False, "a PEM private key",
               ("private key",)),
    SecretRule("jwt", r"\meyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", False, "a JSON web token",
               ("eyj",)),
    SecretRule("aws_access_key", r"\m(AKIA|ASIA)[A-Z0-9]{16}\M", False, "an AWS access key id",
               ("akia", "asia")),
    SecretRule("github_token", r"\m(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})", False,
               "a GitHub token",
               ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    SecretRule("gitlab_token", r"\mglpat-[A-Za-z0-9_-]{20,}", False, "a GitLab personal access token",
               ("glpat-",)),
    SecretRule("slack_token", r"\mxox[abprs]-[A-Za-z0-9-]{10,}", False, "a Slack token",
               ("xox",)),
    SecretRule("stripe_key", r"\m(sk|rk)_live_[A-Za-z0-9]{16,}", False, "a Stripe live key",
               ("_live_",)),
    SecretRule("openai_key", r"\msk-(proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", False, "an OpenAI API key",
               ("sk-",)),
    SecretRule("google_api_key", r"\mAIza[0-9A-Za-z_-]{35}", False, "a Google API key",
               ("aiza",)),
    SecretRule("password_hash",
               r"\$argon2(id|i|d)\$|\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{50,}"
               r"|\$[156]\$(rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{20,}"
               r"|SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$",
               False, "a password hash (argon2, bcrypt, crypt, SCRAM)",
               ("$",)),
    SecretRule("secret_assignment",
               rf"({_ASSIGN_KEYS}){_QUOTES}[[:space:]]*[:=][[:space:]]*{_QUOTES}"
               rf"(?={_VALUE_CH}*[0-9])(?={_VALUE_CH}*[A-Za-z]){_VALUE_CH}{{16,}}",
               False, "a password/secret/token assignment with a high-entropy value (>= 16 chars, letters and digits)",
               ("password", "passwd", "secret", "token", "api_key", "apikey", "access_key")),
)

SECRET_HEADER_RULE = SecretRule(
    "secret_header",
    r"\"(header|key|name)\"[[:space:]]*:[[:space:]]*\"(authorization|proxy-authorization|cookie|set-cookie|"
    r"x-api-key|api-key|apikey|x-auth-token|[a-z0-9_-]*token)\""
    r"|\"(authorization|proxy-authorization|cookie|x-api-key|api-key|apikey|x-auth-token|[a-z0-9_-]*token)\""
    r"[[:space:]]*:[[:space:]]*\"[^\"]",
    True, "an Authorization, Cookie or token header",
               ("authorization", "cookie", "api-key", "apikey", "token"))

RULE_FAMILIES = {r.name: r for r in (*SECRET_RULES, SECRET_HEADER_RULE)}

_FP = "left(encode(sha256(convert_to(%(salt)s || {x}, 'UTF8')), 'hex'), 16)"

_TEXT_COLUMNS_SQL = """
with cols as (
  select c.oid, n.nspname, c.relname, a.attname, a.attnum, a.atttypid,
         coalesce(nullif(ty.typbasetype, 0), ty.oid) as base
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  join pg_type ty on ty.oid = a.atttypid
  where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
    and n.nspname !~ '^pg_(toast_)?temp_'
    and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')
)
select cols.oid, cols.nspname, cols.relname, cols.attname, cols.atttypid::pg_catalog.int8,
       (b.typcategory = 'S' or b.typname in ('json', 'jsonb')
        or (b.typcategory = 'A' and (e.typcategory = 'S' or e.typname in ('json', 'jsonb')))) as texty
from cols join pg_type b on b.oid = cols.base left join pg_type e on e.oid = b.typelem
order by 2, 3, 5"""

_PK_SQL = """
select c.conrelid, array(select a.attname from unnest(c.conkey) with ordinality k(n, o)
                          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n order by k.o)::text[]
from pg_constraint c where c.contype = 'p' and c.conrelid = any(%(oids)s)"""


@dataclass
class _TablePlan:
    schema: str
    name: str
    contract_name: str
    scan_columns: list[str]
    must_be_null: list[str]
    header_columns: list[str]
    pk: list[str]
    must_be_empty: bool
    types: dict[str, int] = field(default_factory=dict)


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _contract_name(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


def scan_plan(conn: psycopg.Connection, contract: Contract) -> list[_TablePlan]:
    """Per user table: the text-like columns to scan (hash columns left out), must-be-null and header columns."""
    rows = conn.execute(_TEXT_COLUMNS_SQL).fetchall()
    oids = sorted({r[0] for r in rows})
    pks = dict(conn.execute(_PK_SQL, {"oids": oids}).fetchall())
    hashes, nulls, headers = contract.hash_columns, contract.must_be_null, contract.secret_headers
    empties = set(contract.must_be_empty)
    plans: dict[int, _TablePlan] = {}
    for oid, schema, name, col, type_oid, texty in rows:
        cname = _contract_name(schema, name)
        p = plans.get(oid)
        if p is None:
            p = plans[oid] = _TablePlan(schema, name, cname, [], [], [], list(pks.get(oid) or []),
                                        cname in empties)
        p.types[col] = type_oid
        if col in nulls.get(cname, []):
            p.must_be_null.append(col)
        if texty and col in headers.get(cname, []):
            p.header_columns.append(col)
        if texty and col not in hashes.get(cname, []):
            p.scan_columns.append(col)
        elif col in nulls.get(cname, []):
            p.scan_columns.append(col)
    # tables with only non-text columns still matter when they must be empty
    return [p for p in plans.values() if p.scan_columns or p.must_be_empty]


def _row_key_sql(p: _TablePlan) -> str:
    if not p.pk:
        return "'ctid:' || t.ctid::pg_catalog.text"
    if len(p.pk) == 1:
        return _text_of(p, p.pk[0])
    return f"row({', '.join('t.' + _qi(c) for c in p.pk)})::pg_catalog.text"


def _text_of(p: _TablePlan, col: str) -> str:
    """A column as text through its type's output function unless the type is PostgreSQL's own."""
    return as_text(psql.SQL("t.") + psql.Identifier(col), p.types.get(col)).as_string(None)


def _redact_keys(p: _TablePlan) -> bool:
    """Row keys that could themselves be secrets (a session token as primary key) are fingerprinted."""
    secretish = ("token", "secret", "password", "key", "hash")
    return p.must_be_empty or any(c in p.must_be_null or any(s in c.lower() for s in secretish) for c in p.pk)


def _scan_table(conn: psycopg.Connection, p: _TablePlan, salt: str, limit: int) -> list[Finding]:
    findings: list[Finding] = []
    table_sql = f"only {_qi(p.schema)}.{_qi(p.name)}"
    rkey = _row_key_sql(p)
    if p.must_be_empty:
        n = conn.execute(f"select count(*) from {table_sql}").fetchone()[0]
        if n:
            findings.append(Finding("must_be_empty", f"{p.contract_name}: {n} row(s); a sanitized clone carries "
                                    "none", table=p.contract_name, extra={"rows": n}))
    if not p.scan_columns:
        return findings
    # rules: (name, pattern or NULL for "any non-null value", flags, only these columns or NULL for all)
    rules: list[tuple] = [(r.name, "(" + r.pattern + ")", r.flags, None, r.like_gates) for r in SECRET_RULES]
    if p.header_columns:
        rules.append((SECRET_HEADER_RULE.name, "(" + SECRET_HEADER_RULE.pattern + ")", SECRET_HEADER_RULE.flags,
                      p.header_columns, SECRET_HEADER_RULE.like_gates))
    if p.must_be_null:
        rules.append(("must_be_null", None, "", p.must_be_null, None))
    params: dict = {"salt": salt, "limit": limit}
    rule_rows = []
    for i, (name, pattern, flags, only, gates) in enumerate(rules):
        params.update({f"rn{i}": name, f"rp{i}": pattern, f"rf{i}": flags, f"ro{i}": only, f"rg{i}": gates})
        rule_rows.append(f"(%(rn{i})s::text, %(rp{i})s::text, %(rf{i})s::text, %(ro{i})s::text[], "
                         f"%(rg{i})s::text[])")
    col_rows = []
    for j, col in enumerate(p.scan_columns):
        params[f"c{j}"] = col
        col_rows.append(f"(%(c{j})s::text, {_text_of(p, col)}, lower({_text_of(p, col)}))")
    fingerprinted_key = f"'fingerprint:' || {_FP.format(x='s.row_key')}"
    params["pk"] = list(p.pk or [])
    # A key is shown only when it cannot itself be the secret: not a matched key column, matching no rule.
    key_out = fingerprinted_key if _redact_keys(p) else (
        f"case when s.col = any(%(pk)s::text[]) or exists (select 1 from rules r2 where r2.re is not null and "
        f"(case when r2.flags = 'i' then s.row_key ~* r2.re else s.row_key ~ r2.re end)) "
        f"then {fingerprinted_key} else s.row_key end")
    # Row gate: a row goes on to the per-column rules only if its text holds some rule's literal
    # (or a must-be-NULL column is set). One lower() and LIKE per row instead of per column and rule.
    params["row_gates"] = sorted({g for rule in rules if rule[4] for g in rule[4]})
    row_text = ", ".join(_text_of(p, c) for c in p.scan_columns)
    row_filter = " or ".join([f"lower(concat_ws(chr(10), {row_text})) like any(%(row_gates)s::text[])",
                              *(f"t.{_qi(c)} is not null" for c in p.must_be_null)])
    sql = f"""
with rules(rule, re, flags, only_cols, gates) as (values {', '.join(rule_rows)}),
hits as (
  select {rkey} as row_key, v.col, r.rule,
         case when r.re is null then v.val else (regexp_match(v.val, r.re, r.flags))[1] end as hit
  from {table_sql} t
  cross join lateral (values {', '.join(col_rows)}) v(col, val, lval)
  join rules r on (r.only_cols is null or v.col = any(r.only_cols))
  where ({row_filter})
    and v.val is not null
    -- one CASE, so the cheap literal gate is evaluated first (the planner reorders separate quals by cost)
    and (case when r.gates is not null and not (v.lval like any(r.gates)) then false
              when r.re is null then true
              when r.flags = 'i' then v.val ~* r.re
              else v.val ~ r.re end)
),
ranked as (
  select row_key, col, rule, {_FP.format(x='hit')} as fp,
         count(*) over (partition by col, rule) as n,
         row_number() over (partition by col, rule order by row_key) as rn
  from hits
)
select {key_out}, s.col, s.rule, s.fp, s.n from ranked s where s.rn <= %(limit)s
order by s.col, s.rule, s.rn"""
    counted: set[tuple] = set()
    for row_key, col, rule, fp, n in conn.execute(sql, params):
        findings.append(Finding(rule, f"{p.contract_name}.{col}: {rule} in row {row_key}",
                                table=p.contract_name, column=col, row_key=row_key, fingerprint=fp))
        if n > limit and (col, rule) not in counted:
            counted.add((col, rule))
            findings.append(Finding(rule, f"{p.contract_name}.{col}: {rule} in {n} rows ({limit} listed)",
                                    table=p.contract_name, column=col, extra={"rows": n, "listed": limit}))
    return findings


def scan_catalog(conn: psycopg.Connection) -> list[Finding]:
    """Secrets the catalog itself can carry: user-mapping and subscription passwords.

    (Every object of a clone belongs to its restoring role, which can create no other role, so a
    role password is never the dump's.)"""
    out: list[Finding] = []
    for srv, user, has_pw in conn.execute(
            "select srvname, usename, coalesce(exists (select 1 from unnest(umoptions) o "
            "where o ~* '^(password|passfile|sslpassword|sslkey)='), false) from pg_user_mappings"):
        out.append(Finding("user_mapping" if not has_pw else "user_mapping_password",
                           f"user mapping for {user} on server {srv}" +
                           (" carries a password" if has_pw else " (a clone carries no user mappings)"),
                           extra={"server": srv, "user": user}))
    try:
        with conn.transaction():
            subs = conn.execute(
                "select subname, subconninfo ~* 'password[[:space:]]*=' from pg_subscription "
                "where subdbid = (select oid from pg_database where datname = current_database())").fetchall()
    except psycopg.errors.InsufficientPrivilege:
        subs = conn.execute("select subname, null from pg_stat_subscription "
                            "where subname is not null").fetchall()
    for name, has_pw in subs:
        out.append(Finding("subscription_password" if has_pw else "subscription",
                           f"subscription {name}" + (" carries a password in its conninfo" if has_pw else
                                                     " (a clone carries no subscriptions)"), extra={"name": name}))
    return out


def scan_secrets(server_conn_factory: Callable[[str], psycopg.Connection], database: str, contract: Contract,
                 salt: str, *, workers: int | None = None, rows_per_kind: int = ROWS_PER_FINDING_KIND
                 ) -> list[Finding]:
    """Secret findings in the rows of `database`: must-be-null columns, must-be-empty tables, pattern rules.

    The catalog (user mappings, subscriptions, role passwords) is `scan_catalog`, run on an admin connection.

    `server_conn_factory(database)` opens a connection (through the host guard); each worker thread
    uses one. `salt` is per run: fingerprints let findings of one run be compared, never reversed.
    """
    if not salt:
        raise ValueError("a per-run salt is required")
    with server_conn_factory(database) as conn:
        plans = scan_plan(conn, contract)
    findings: list[Finding] = []
    if not plans:
        return findings
    workers = max(1, min(workers or (os.cpu_count() or 4), len(plans)))
    local = threading.local()
    opened: list[psycopg.Connection] = []
    lock = threading.Lock()

    def work(p: _TablePlan) -> list[Finding]:
        c = getattr(local, "conn", None)
        if c is None:
            c = local.conn = server_conn_factory(database)
            with lock:
                opened.append(c)
        return _scan_table(c, p, salt, rows_per_kind)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fix7-secrets") as pool:
            for result in pool.map(work, plans):
                findings.extend(result)
    finally:
        for c in opened:
            c.close()
    return findings
