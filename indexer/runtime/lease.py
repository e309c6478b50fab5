"""Who is writing, and whether it still lives: the owner token of a running ingest (or service job) and the
heartbeat that keeps its lease.

An owner token is ``host/boot/pidns/pid/start``: the host name, the kernel's boot id, the process's PID namespace,
its PID and its start time (clock ticks since boot). An owner lives while its heartbeat is younger than the lease
(:data:`LEASE_SECONDS`). On the same host, boot and PID namespace its process is also checked directly (a PID
reused by another process has another start time; a zombie is dead), so the rows of a killed ingest are
recognised at once; when the process cannot be inspected (``/proc`` hidden), the heartbeat alone decides. Hosts
are expected to keep their clocks in step (NTP), well within the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 120.0  # an owner on another host is dead after this long without a heartbeat


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or "" where unknown."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on: the command name, in parentheses, may hold spaces."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[-1].split() if stat else []


def _process_alive(pid: int, start: str) -> bool | None:
    """Whether process ``pid`` started at ``start`` still runs: True, False, or None when it cannot be told."""
    fields = _stat_fields(pid)
    if fields:
        return fields[0] != "Z" and len(fields) > 19 and fields[19] == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user, and /proc hides it: the heartbeat decides
        return None
    return None


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


@lru_cache(maxsize=1)
def _machine() -> tuple[str, str, str]:
    return socket.gethostname()[:80], _read("/proc/sys/kernel/random/boot_id")[:8], _pid_namespace()


def current_owner() -> str:
    """This process's owner token."""
    host, boot, ns = _machine()
    pid = os.getpid()
    return f"{host}/{boot}/{ns}/{pid}/{_start_ticks(pid)}"


def is_alive(owner: str | None, heartbeat_at: datetime | None, *, now: datetime | None = None,
             lease_seconds: float = LEASE_SECONDS) -> bool:
    """Whether the owner of a lease still lives: checked directly on this host, by its heartbeat elsewhere."""
    if not owner:
        return False
    parts = owner.split("/")
    if len(parts) == 5:
        host, boot, ns, pid, start = parts
        if (host, boot, ns) == _machine() and boot and ns and start and pid.isdigit():
            if _process_alive(int(pid), start) is False:
                return False
    if heartbeat_at is None:
        return False
    if heartbeat_at.tzinfo is None:  # SQLite gives naive datetimes back; they were written in UTC
        heartbeat_at = heartbeat_at.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return now - heartbeat_at < timedelta(seconds=lease_seconds)


def describe_owner(owner: str | None) -> str:
    """``process 123 on host h`` for messages."""
    if not owner:
        return "an unknown process"
    parts = owner.split("/")
    return f"process {parts[3]} on {parts[0]}" if len(parts) == 5 else owner


class Heartbeat:
    """A thread that calls ``beat()`` every ``interval`` seconds while the ``with`` block runs; a failing beat is
    logged and retried at the next interval. ``beat`` returns False when the lease was lost (its row is gone):
    the thread stops and ``lost`` is set, which the worker checks."""

    def __init__(self, beat: Callable[[], bool], interval: float = HEARTBEAT_SECONDS, name: str = "unibind-heartbeat") -> None:
        self._beat, self._interval = beat, interval
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._beat():
                    self.lost.set()
                    return
            except Exception as e:  # noqa: BLE001 - a busy database: the lease is long enough for the next beat
                log.warning("heartbeat failed: %s", e)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
