"""Table A: which clones exist on disk, and which of them may be used — found without restoring or
opening anything that could hold credentials.

Dumps are classified by format and table of contents; other database files by their magic bytes;
credential stores by name and path alone, never opened.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from pathlib import Path

from ..dumps.identify import inspect_dump
from ..dumps.screening import screen_dump
from ..shared.errors import Fix7Error
from ..shared.escape import visible

MAX_DEPTH = 6
MAX_FILES = 20000
SKIP_DIRS = {".venv", "venv", ".git", "node_modules", "__pycache__", ".tox", ".mypy_cache", ".cache", "site-packages",
             ".hg", ".svn", "pgdata", "factory-pgdata"}
BIRTH_TABLES = ("birth_registry", "os_proposal_approvals")

# (glob on the path relative to a home-like root or the file name, label). Matched on name/path only.
CREDENTIAL_STORES = (
    ("credentials.db", "gcloud credentials"), ("access_tokens.db", "gcloud access tokens"),
    ("legacy_credentials", "gcloud legacy credentials"), ("application_default_credentials.json", "gcloud ADC"),
    ("Login Data", "browser saved passwords"), ("Login Data For Account", "browser saved passwords"),
    ("Cookies", "browser cookies"), ("Web Data", "browser autofill"), ("key4.db", "Firefox key store"),
    ("logins.json", "Firefox saved passwords"), ("cookies.sqlite", "Firefox cookies"),
    (".pgpass", "PostgreSQL password file"), ("pgpass.conf", "PostgreSQL password file"),
    ("*.keychain", "macOS keychain"), ("*.keychain-db", "macOS keychain"), ("*.kdbx", "KeePass vault"),
    ("*.kdb", "KeePass vault"), ("*.1pif", "1Password export"), ("*.opvault", "1Password vault"),
    ("*.agilekeychain", "1Password vault"), ("1password*.sqlite", "1Password data"),
    ("data.json", "Bitwarden data (when under a Bitwarden directory)"), ("credentials", "AWS credentials"),
    (".netrc", "netrc credentials"), ("_netrc", "netrc credentials"), (".git-credentials", "git credentials"),
    ("id_rsa", "SSH private key"), ("id_ed25519", "SSH private key"), ("id_ecdsa", "SSH private key"),
    ("*.pem", "private key / certificate"), ("*.p12", "PKCS#12 key store"), ("*.pfx", "PKCS#12 key store"),
    (".my.cnf", "MySQL client credentials"), ("hosts.yml", "GitHub CLI tokens (when under gh)"),
    (".env", "environment secrets"), ("*.env", "environment secrets"), ("service-account*.json", "cloud service key"),
)
# Path parts that make an otherwise generic name a credential store.
_CONTEXT_ONLY = {"data.json": ("bitwarden",), "credentials": (".aws", "aws"), "hosts.yml": ("gh",),
                 "Cookies": (), "Web Data": ()}
_DB_MAGIC = ((b"SQLite format 3\x00", "SQLite database"), (b"PGDMP", "pg_dump archive"))
_DUMP_SUFFIXES = (".sql", ".sql.gz", ".dump", ".pgdump", ".backup", ".bak", ".tar", ".pg", ".psql")


def _credential_label(path: Path) -> str | None:
    name = path.name
    parts = [p.lower() for p in path.parts[:-1]]
    for pattern, label in CREDENTIAL_STORES:
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        ctx = _CONTEXT_ONLY.get(pattern)
        if ctx and not any(any(c in p for c in ctx) for p in parts):
            continue
        return label
    if any("1password" in p or "bitwarden" in p or "keepass" in p for p in parts):
        return "password manager data"
    return None


def _row(candidate: str, source: str, *, production_shaped, isolated, contains_secrets, allowed, present=True,
         note: str = "") -> dict:
    return {"candidate_clone": candidate, "source": source, "production_shaped": production_shaped,
            "isolated": isolated, "contains_secrets": contains_secrets, "allowed": allowed, "present": present,
            "note": note}


def _classify_dump(path: Path) -> dict:
    try:
        info = inspect_dump(path, verify_data=False, timeout=120)
    except Fix7Error as e:
        return _row(str(path), "file on disk", production_shaped=False, isolated="unknown",
                    contains_secrets="unknown", allowed=False, note=f"Not a usable dump: {e.message}")
    names = {t.split(".")[-1] for t in info.tables}
    birth = [t for t in BIRTH_TABLES if t in names]
    directus = sorted(n for n in names if n.startswith("directus_"))
    shaped = len(birth) == len(BIRTH_TABLES) and bool(directus)
    try:
        findings = [f for f in screen_dump(info) if f.is_error]
    except Fix7Error as e:
        findings = []
        screen_note = f"screening failed: {e.message}"
    else:
        screen_note = ""
    isolation_refusals = [f for f in findings if f.extra.get("isolation")]
    note = (f"pg_dump {info.format} dump by pg_dump {info.pg_dump_version or '?'} of server "
            f"{info.server_version or '?'}; carries {', '.join(birth) or 'no birth tables'}"
            f"{' and ' + str(len(directus)) + ' directus_* tables' if directus else ''}"
            f"{'; schema only' if info.schema_only else ''}. sha256 {info.sha256[:16]}…")
    if findings:
        note += " Refused by screening: " + "; ".join(sorted({f.rule for f in findings})) + "."
    if screen_note:
        note += " " + screen_note
    return _row(str(path), f"{info.format} pg_dump", production_shaped=shaped if shaped else False,
                isolated=False if isolation_refusals else "to be proven after restore",
                contains_secrets="to be proven after restore (sanitization gate)",
                allowed=("candidate - rehearsal gates decide" if shaped and not findings else False), note=note)


def _sniff_file(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    for magic, label in _DB_MAGIC:
        if head.startswith(magic):
            return label
    if head.startswith(b"\x1f\x8b") and path.name.endswith((".sql.gz", ".dump.gz")):
        return "gzip dump"
    if path.name.endswith(_DUMP_SUFFIXES) and b"-- PostgreSQL database dump" in head:
        return "plain dump"
    if len(head) >= 262 and head[257:262] == b"ustar" and head.startswith(b"toc.dat\x00"):
        return "tar dump"
    return None


def find_candidates(roots: list[Path], *, max_depth: int = MAX_DEPTH, max_files: int = MAX_FILES) -> list[dict]:
    """Table A rows for every dump, database file and credential store under `roots` (bounded walk)."""
    rows: list[dict] = []
    seen = 0
    truncated = False
    for root in roots:
        root = Path(os.path.expanduser(str(root)))
        if not root.exists():
            rows.append(_row(str(root), "operator-named location", production_shaped=False, isolated="n/a",
                             contains_secrets="n/a", allowed=False, present=False, note="Location does not exist."))
            continue
        if root.is_file() or (root / "toc.dat").is_file():
            rows.append(_classify_path(root))
            continue
        base_depth = len(root.parts)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            depth = len(here.parts) - base_depth
            if "toc.dat" in filenames and here != root:
                rows.append(_classify_dump(here))
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and depth < max_depth)
            for name in sorted(filenames):
                seen += 1
                if seen > max_files:
                    truncated = True
                    break
                row = _classify_path(here / name)
                if row:
                    rows.append(row)
            if truncated:
                break
        if truncated:
            rows.append(_row(str(root), "search limit", production_shaped="unknown", isolated="unknown",
                             contains_secrets="unknown", allowed=False, present="unknown",
                             note=f"Stopped after {max_files} files; name the dump's location more precisely."))
            break
    return rows


def _classify_path(path: Path) -> dict | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    label = _credential_label(path)
    if label:
        return _row(str(path), label, production_shaped=False, isolated="n/a",
                    contains_secrets="credential store - MUST NOT be used", allowed=False,
                    note="Recognised by name and location only; it was not opened or read.")
    if stat.S_ISDIR(st.st_mode):
        return _classify_dump(path) if (path / "toc.dat").is_file() else None
    if not stat.S_ISREG(st.st_mode):
        return None
    kind = _sniff_file(path)
    if kind is None:
        return None
    if kind == "SQLite database":
        return _row(str(path), "local application state (SQLite)", production_shaped=False, isolated="n/a",
                    contains_secrets="unknown - not opened", allowed=False,
                    note="A SQLite file is not a PostgreSQL production-shaped clone of the birth surface.")
    return _classify_dump(path)


def _cell(v) -> str:
    return visible(v)


def format_table(rows: list[dict]) -> str:
    """Table A as fixed-width text for people (notes wrap below each row)."""
    cols = ["candidate_clone", "source", "production_shaped", "isolated", "contains_secrets", "allowed", "present"]
    if not rows:
        return "No candidate clones found."
    widths = {c: min(48, max(len(c), *(len(_cell(r.get(c, ""))) for r in rows))) for c in cols}

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: w - 1] + "…"

    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    for r in rows:
        lines.append("  ".join(fit(_cell(r.get(c, "")), widths[c]).ljust(widths[c]) for c in cols))
        if r.get("note"):
            lines.append("    note: " + _cell(r["note"]))
    return "\n".join(lines)
