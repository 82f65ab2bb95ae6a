"""Helper processes end when the process that started them ends, `kill -9` included.

Sits at the bottom of the flow beside stores/lock.py: the synthetic world's render pool
(stores/sources/synthetic) and the training DataLoader workers (pipeline/train/data.py) run
`die_with(pid)` as their initializer. A daemon thread waits on a pidfd of that process (Linux 5.3+;
polling once a second elsewhere) and ends this process at once when it is gone, whoever our direct
parent is (DataLoader workers are children of the forkserver, not of the trainer).
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time

POLL_S = 1.0


def die_with(pid: int) -> None:
    """End this process (SIGKILL to itself) as soon as process `pid` has ended; returns at once.
    If `pid` is already gone, ends now. Safe to call more than once."""
    threading.Thread(target=_watch, args=(int(pid),), name=f"die-with-{pid}", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        _end()
    except (AttributeError, OSError):          # no pidfd here: poll
        while _alive(pid):
            time.sleep(POLL_S)
        _end()
    else:
        select.select([fd], [], [])            # readable once the process has ended
        _end()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
