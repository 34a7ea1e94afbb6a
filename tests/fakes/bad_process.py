"""A misbehaving child for tests/test_runner.py (in the spirit of tox's tests/.../bad_process.py).

    bad_process.py stubborn PIDFILE          ignore SIGTERM, start a grandchild that ignores it too and holds
                                             stdout/stderr, print "ready", then sleep forever
    bad_process.py orphan PIDFILE MODE       start a grandchild, then exit 0 at once. MODE:
                                               pipes      grandchild holds stdout/stderr, dies on SIGTERM
                                               stubborn   grandchild holds stdout/stderr, ignores SIGTERM
                                               detached   grandchild's output goes to /dev/null
    bad_process.py grandchild PIDFILE IGNORE READY_FD   (internal) the grandchild

Every process appends "<role> <pid>" to PIDFILE only after its signal handling is set up, so a test that
finds both lines knows the scenario really ran. The leader waits for the grandchild's ready byte (a pipe,
not a sleep) before going on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def record(pidfile: str, role: str) -> None:
    with open(pidfile, "a", encoding="utf-8") as handle:
        handle.write(f"{role} {os.getpid()}\n")


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def start_grandchild(pidfile: str, ignore_term: bool, detached: bool) -> None:
    ready_r, ready_w = os.pipe()
    devnull = subprocess.DEVNULL if detached else None
    subprocess.Popen(
        [sys.executable, __file__, "grandchild", pidfile, "1" if ignore_term else "0", str(ready_w)],
        pass_fds=(ready_w,),
        stdin=subprocess.DEVNULL,
        stdout=devnull,
        stderr=devnull,
    )
    os.close(ready_w)
    if os.read(ready_r, 1) != b"x":
        raise SystemExit("grandchild died before it was ready")
    os.close(ready_r)


def stubborn(pidfile: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    start_grandchild(pidfile, ignore_term=True, detached=False)
    record(pidfile, "leader")
    print("ready", flush=True)
    sleep_forever()


def orphan(pidfile: str, mode: str) -> None:
    start_grandchild(pidfile, ignore_term=mode == "stubborn", detached=mode == "detached")
    record(pidfile, "leader")
    print("leader done", flush=True)


def grandchild(pidfile: str, ignore: str, ready_fd: str) -> None:
    if ignore == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record(pidfile, "grandchild")
    os.write(int(ready_fd), b"x")
    os.close(int(ready_fd))
    sleep_forever()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"stubborn": stubborn, "orphan": orphan, "grandchild": grandchild}[command](*args)
