"""Evidence in an S3 bucket: `s3://bucket/prefix`, with the guarantees it has in a folder on disk.

Credentials, endpoint and region come from the standard AWS environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION); none of them is
ever written into the evidence or printed. What a folder gets from O_EXCL and O_APPEND, a bucket gets from the
conditional PUT (`If-None-Match: *`, which S3 and S3-compatible stores refuse with 412 when the key exists):
- the journal is one object per entry, `<packet>/rehearsal-journal/<n>.jsonl`, each created exclusively: its
  first entry claims the packet (of two runs naming one prefix, one gets it), later ones take the next free n;
- the render claim, and every packet file, is created exclusively: a sealed packet is never overwritten;
- the audit chain (FIX7_AUDIT_CHAIN, or `<FIX7_EVIDENCE_ROOT>/audit-chain`) is one object per entry,
  `<chain>/<seq>.json`, created exclusively under a lock object, itself created exclusively.
Whoever can write the bucket without those conditions can still replace an object: `fix7 audit --verify` then
finds the edit (the chain's hashes and Dagster's witness disagree), and a bucket with object lock keeps the
original version (docs/DEPLOY.md).
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
import uuid
from contextlib import contextmanager
from types import SimpleNamespace
from urllib.parse import urlsplit

JOURNAL_ENTRIES = "rehearsal-journal"  # the journal's folder of entries in a packet on S3
CHAIN_ENTRY = re.compile(r"^\d{8}\.json$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
LOCK_STALE_S = 300.0  # a chain lock this old was left by a process that died while sealing
LOCK_WAIT_S = 120.0


class StoreFault(OSError):
    """The object store refused or could not be reached: a fault of the storage, never a verdict on the clone.
    An OSError (EIO) so whatever handles a disk's failure handles it; its text names no credential."""

    def __init__(self, where, what: str, cause: str):
        self.evidence_store = True
        super().__init__(errno.EIO, f"the object store answered {cause} when {what}")
        self.filename = str(where)

    @property
    def message(self) -> str:
        return (f"The evidence at {self.filename} could not be reached: {self.strerror}. Nothing was judged: check "
                "the bucket, the endpoint (AWS_ENDPOINT_URL) and the credentials (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY), then rehearse again.")


def endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def endpoint_shown() -> str:
    """The endpoint as printed: scheme, host and port only (a URL may carry a login)."""
    url = endpoint()
    if not url:
        return f"AWS S3 in {region()}"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


_clients: dict = {}


def client():
    """One boto3 S3 client per process and environment (a forked step builds its own)."""
    key = (os.getpid(), endpoint(), region(), os.environ.get("AWS_ACCESS_KEY_ID"),
           os.environ.get("AWS_PROFILE"))
    if key not in _clients:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                        s3={"addressing_style": "path"} if endpoint() else None)
        _clients.clear()
        _clients[key] = boto3.session.Session().client("s3", endpoint_url=endpoint(), region_name=region(),
                                                       config=config)
    return _clients[key]


def _call(where, what: str, op: str, **kw):
    """One S3 request: 412/409 is FileExistsError, 404 FileNotFoundError, anything else a StoreFault."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client(), op)(**kw)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code") or "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise FileExistsError(errno.EEXIST, "exists", str(where)) from None
        if status == 404 or code in ("NoSuchKey", "NotFound", "404"):
            raise FileNotFoundError(errno.ENOENT, "not found", str(where)) from None
        raise StoreFault(where, what, f"{code or status}") from None
    except BotoCoreError as e:  # no credentials, the endpoint unreachable: the class names it, never a secret
        raise StoreFault(where, what, type(e).__name__) from None


class S3Path:
    """An evidence location in a bucket, answering what fix7 asks of a pathlib.Path there."""

    __slots__ = ("bucket", "key")

    def __init__(self, bucket: str, key: str = ""):
        self.bucket = bucket
        self.key = "/".join(p for p in key.split("/") if p)

    @classmethod
    def from_url(cls, url: str) -> S3Path:
        parts = urlsplit(url)
        return cls(parts.hostname or parts.netloc, parts.path)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Path({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, S3Path) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, name) -> S3Path:
        return S3Path(self.bucket, f"{self.key}/{name}" if self.key else str(name))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Path:
        return S3Path(self.bucket, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def resolve(self, strict: bool = False) -> S3Path:
        return self

    def _head(self):
        return _call(self, "reading", "head_object", Bucket=self.bucket, Key=self.key)

    def is_file(self) -> bool:
        try:
            self._head()
            return True
        except FileNotFoundError:
            return False

    def is_dir(self) -> bool:
        got = _call(self, "listing", "list_objects_v2", Bucket=self.bucket, Prefix=self.key + "/", MaxKeys=1)
        return bool(got.get("KeyCount"))

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def is_symlink(self) -> bool:
        return False

    def read_bytes(self) -> bytes:
        return _call(self, "reading", "get_object", Bucket=self.bucket, Key=self.key)["Body"].read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def stat(self):
        head = self._head()
        return SimpleNamespace(st_size=int(head["ContentLength"]), st_mtime=head["LastModified"].timestamp())

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to make: a prefix exists once an object is under it."""

    def unlink(self, missing_ok: bool = False) -> None:
        _call(self, "deleting", "delete_object", Bucket=self.bucket, Key=self.key)

    def keys(self) -> list[str]:
        """Every key under this prefix, relative to it, in order."""
        out, token = [], None
        prefix = self.key + "/" if self.key else ""
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            got = _call(self, "listing", "list_objects_v2", **kw)
            out += [o["Key"][len(prefix):] for o in got.get("Contents") or []]
            token = got.get("NextContinuationToken")
            if not token:
                return sorted(out)

    def names(self) -> list[str]:
        """What this prefix holds one level down (objects and sub-prefixes), like os.listdir."""
        out, token = set(), None
        prefix = self.key + "/" if self.key else ""
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/",
                  **({"ContinuationToken": token} if token else {})}
            got = _call(self, "listing", "list_objects_v2", **kw)
            out |= {o["Key"][len(prefix):] for o in got.get("Contents") or []}
            out |= {p["Prefix"][len(prefix):].rstrip("/") for p in got.get("CommonPrefixes") or []}
            token = got.get("NextContinuationToken")
            if not token:
                return sorted(out)

    def create(self, data: bytes) -> None:
        """PUT only if no object has this key (If-None-Match: *); FileExistsError when one does."""
        _call(self, "writing", "put_object", Bucket=self.bucket, Key=self.key, Body=data, IfNoneMatch="*")


    def write(self, data: bytes) -> None:
        """PUT, replacing what is there: only for what is not evidence (a run's stage outputs)."""
        _call(self, "writing", "put_object", Bucket=self.bucket, Key=self.key, Body=data)

    def remove_tree(self) -> None:
        """Every object under this prefix removed (a run's stage outputs, once the run ended)."""
        for k in self.keys():
            (self / k).unlink()


def url_problem(url: str, what: str = "evidence directory") -> str | None:
    """Why `url` cannot name a place for evidence in S3, in one paragraph (never echoing a credential in it)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return (f"The {what} names credentials in its s3:// URL; they are never taken from a URL (it would be "
                "printed and recorded). Name s3://bucket/prefix and put the credentials in AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY. Nothing was written.")
    bucket = parts.hostname or ""
    if not BUCKET.match(bucket) or parts.port is not None:
        return (f"The {what} {url!r} does not name an S3 bucket: write s3://bucket/prefix (a bucket name of 3 to 63 "
                "lower-case letters, digits, dots and dashes; the endpoint goes in AWS_ENDPOINT_URL). Nothing was "
                "written.")
    if parts.query or parts.fragment or any(p in (".", "..") for p in parts.path.split("/")):
        return (f"The {what} {url!r} has a query, a fragment or a . or .. segment; name s3://bucket/prefix. "
                "Nothing was written.")
    try:
        import boto3  # noqa: F401
    except ImportError:
        return (f"The {what} {url!r} is in S3, and boto3 is not installed in this environment (make install "
                "installs it). Nothing was written.")
    return None


def reachable_problem(path: S3Path) -> str | None:
    """Before a run: are there credentials, and does the bucket answer them? One paragraph, or None."""
    import boto3

    if boto3.session.Session().get_credentials() is None:
        return (f"The evidence location {path} is in S3 and no AWS credentials are set: put them in "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for an S3-compatible store). "
                "Nothing was written.")
    try:
        _call(path, "checking the bucket", "head_bucket", Bucket=path.bucket)
    except (FileNotFoundError, StoreFault) as e:
        why = "there is no such bucket" if isinstance(e, FileNotFoundError) else e.strerror
        return (f"The evidence location {path} cannot be used: {why} (endpoint {endpoint_shown()}). Create "
                "the bucket or fix AWS_ENDPOINT_URL and the credentials; nothing was written.")
    return None


def connection(path: S3Path) -> dict:
    """The object store as a ledger entry of the packet's `connections`: where, never with which credentials."""
    import datetime as dt

    url = endpoint() or f"https://s3.{region()}.amazonaws.com"
    parts = urlsplit(url)
    return {"host": parts.hostname or "", "port": parts.port or (443 if parts.scheme == "https" else 80),
            "database": f"s3://{path.bucket}", "role": "", "purpose": "evidence store (journal, packet, audit chain)",
            "client": "boto3", "opened_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


# -- the journal: one object per entry ------------------------------------------------------------

_next_entry: dict[str, int] = {}


def _entry(directory: S3Path, n: int) -> S3Path:
    return directory / JOURNAL_ENTRIES / f"{n:08d}.jsonl"


def journal_create(directory: S3Path, line: bytes) -> None:
    """The journal's first entry, created exclusively: FileExistsError when another run holds the prefix."""
    _entry(directory, 0).create(line)
    _next_entry[str(directory)] = 1


def journal_append(directory: S3Path, lines: list[bytes]) -> None:
    """Each line as the next free entry; one another process took meanwhile is skipped, never overwritten."""
    n = _next_entry.get(str(directory))
    if n is None:
        if not _entry(directory, 0).is_file():
            raise FileNotFoundError(errno.ENOENT, "no journal", str(directory / JOURNAL_ENTRIES))
        n = len((directory / JOURNAL_ENTRIES).keys())
    for line in lines:
        while True:
            try:
                _entry(directory, n).create(line)
                break
            except FileExistsError:
                n += 1
        n += 1
    _next_entry[str(directory)] = n


def journal_exists(directory: S3Path) -> bool:
    return _entry(directory, 0).is_file()


def journal_bytes(directory: S3Path) -> bytes:
    """The entries in order, one line each: what rehearsal-journal.jsonl holds on disk."""
    base = directory / JOURNAL_ENTRIES
    if not journal_exists(directory):
        raise FileNotFoundError(errno.ENOENT, "no journal", str(base))
    return b"".join((base / k).read_bytes() for k in base.keys() if k.endswith(".jsonl"))


# -- the audit chain: one object per entry, written under a lock -----------------------------------

def chain_lines(chain: S3Path) -> list[str]:
    return [(chain / k).read_text().rstrip("\n") for k in chain.keys() if CHAIN_ENTRY.match(k)]


@contextmanager
def chain_lock(chain: S3Path):
    """One sealer at a time across machines: a lock object created exclusively, removed after; one older than
    LOCK_STALE_S was left by a sealer that died and is taken over."""
    lock = chain / ".lock"
    deadline = time.monotonic() + LOCK_WAIT_S
    token = json.dumps({"holder": uuid.uuid4().hex, "pid": os.getpid()}).encode()
    while True:
        try:
            lock.create(token)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > LOCK_STALE_S:
                    lock.unlink()
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                raise StoreFault(lock, f"waiting {LOCK_WAIT_S:.0f}s for the audit chain's lock", "a held lock")
            time.sleep(0.2)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def chain_append(chain: S3Path, seq: int, line: bytes) -> None:
    (chain / f"{seq:08d}.json").create(line)
