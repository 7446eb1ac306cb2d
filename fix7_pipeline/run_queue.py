"""Runs queued per rehearsal server (issue 28.2): the instance's run coordinator (dagster.yaml).

Every rehearsal restores a clone, copies it and rehearses on one PostgreSQL server; a dozen started at once by a
sensor would all hit the same server. Dagster's QueuedRunCoordinator limits runs by tag, so each run submitted to
the queue (launchpad, schedule, sensor) is tagged `fix7/server` with the server it will use, host and port only
(never a login or a password), and dagster.yaml's `tag_concurrency_limits` bound the runs per tag value. The CLI
runs its rehearsal in its own process, outside the queue; its run carries the tag too (from intake), so queued
runs for that server count it.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import parse_qs, urlsplit

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

SERVER_TAG = "fix7/server"
SERVER_URL_ENV = "FIX7_REHEARSAL_SERVER"  # as defs/resources.py (the resource's default server)


def server_key(url: str | None) -> str:
    """The rehearsal server a URL names, as the queue keys it: `host:port`, or `embedded@<machine>` for the
    embedded server (one per machine). Never a user name or a password."""
    url = (url or "").strip() or os.environ.get(SERVER_URL_ENV, "").strip() or "embedded"
    if url == "embedded":
        return f"embedded@{socket.gethostname()}"
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        host = (query.get("host") or [None])[0] or parts.hostname or "localhost"
        port = (query.get("port") or [None])[0] or parts.port or 5432
        return f"{host}:{port}"
    except ValueError:
        return "unreadable-server-url"


def run_server_key(run_config: dict | None) -> str:
    config = (((run_config or {}).get("ops") or {}).get("clone_intake") or {}).get("config") or {}
    return server_key(config.get("server_url"))


class ServerQueuedRunCoordinator(QueuedRunCoordinator):
    """The QueuedRunCoordinator, with each submitted run tagged with its rehearsal server (SERVER_TAG) before it
    is queued, so the daemon's tag limits see it."""

    def submit_run(self, context: SubmitRunContext):
        run = context.dagster_run
        key = run_server_key(run.run_config)
        if run.tags.get(SERVER_TAG) != key:
            self._instance.add_run_tags(run.run_id, {SERVER_TAG: key})
        return super().submit_run(context)
