"""`fix7 rehearse`'s request flags: one per field of the request schema (`core/intake/request.py`), and back to run config."""

from __future__ import annotations

import argparse
from pathlib import Path

from fix7_pipeline.core.intake.request import IMPACT, request_fields

_GROUPS = {IMPACT: "impact thresholds (a breach fails the rehearsal; unset, the impact is only reported)"}


def add_request_flags(parser: argparse.ArgumentParser) -> None:
    """`fix7 rehearse`'s options, one per field; the impact thresholds in their own group."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in request_fields():
        flag = f.flag
        if flag is None:
            continue
        target = parser
        if flag.group:
            target = groups.get(flag.group) or groups.setdefault(flag.group, parser.add_argument_group(_GROUPS[flag.group]))
        kwargs: dict = {"help": flag.help, "dest": f.name}
        if flag.switch:
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = flag.metavar
            if flag.repeat:
                kwargs["action"] = "append"
            if flag.parse:
                kwargs["type"] = flag.parse
            if flag.required:
                kwargs["required"] = True
        target.add_argument(flag.name, **kwargs)


def _cli_path(value: str, how: str | None) -> str:
    from fix7_pipeline.core.storage.store import scheme

    if scheme(value):  # a URL (s3://bucket/prefix) is a location, never a folder named after its scheme
        return value
    p = Path(value).expanduser()
    return str(p.absolute() if how == "absolute" else p.resolve() if how == "resolve" else p)


def request_config(args: argparse.Namespace) -> dict:
    """The job's run config for clone_intake from `fix7 rehearse`'s parsed options (dest = field name).

    An option not given is left out, so the field's default applies; the thresholds are always present
    (None = not gated). `server_url` is as given: the CLI moves a password in it to the environment.
    """
    config: dict = {}
    for f in request_fields():
        if f.flag is None:
            continue
        value = getattr(args, f.name, None)
        if f.flag.repeat:
            value = [_cli_path(v, f.flag.path) if f.flag.path else v for v in (value or [])]
        elif f.flag.switch:
            value = bool(value)
        elif value in (None, "") and f.annotation is str:
            value = ""
        elif value is None:
            if f.default is not None:
                continue
        elif f.flag.path:
            value = _cli_path(value, f.flag.path)
        config[f.name] = value
    return config
