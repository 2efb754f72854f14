"""Who holds a store lock, and whether that process is still alive.

A holder is ``HOST:PID:START`` (START: the process's start time in clock ticks since boot, from
/proc), so a lock left by a process killed with -9 is recognised as dead on the same host at once,
even after its pid was reused. Holders on other hosts (or without /proc) are judged by their
heartbeat only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import threading
import time
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def this_holder() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '?'}"


def holder_is_dead(holder: str) -> bool:
    """True only when ``holder`` ran on this host and that process is gone (or its pid was reused)."""
    host, _, rest = holder.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or not Path("/proc/self/stat").exists():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    running = _start_ticks(pid)
    if running is None:
        return True
    return bool(start) and start != "?" and running != start


def die_with_parent(parent: int) -> None:
    """In a worker process: end when ``parent`` (the scan) ends, even by kill -9.

    The kernel's parent-death signal does it at once on Linux; a watchdog thread that checks the
    parent pid covers the rest (and the moment before the signal was armed).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
