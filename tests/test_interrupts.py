"""Issue 9: `adws run` stopped by SIGTERM, SIGHUP or Ctrl-C (SIGINT), once or repeatedly: the attempt that was
running is in the result (--json), the audit log and the ledger; the agent and its helpers are gone; the
concurrency slot is free."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adws import audit, interrupts
from tests.helpers import ROOT, alive
from tests.hostile import SECRETS, config_text


def _start(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    text = config_text(mode, extra="").replace("kill_grace = 1\n[[providers.h.accounts]]",
                                              "kill_grace = 1\nmax_concurrency = 1\n[[providers.h.accounts]]")
    (tmp_path / "c.toml").write_text(text, encoding="utf-8")
    (tmp_path / "p.txt").write_text("fix it", encoding="utf-8")
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT), "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3"),
           "HOSTILE_PIDFILE": str(tmp_path / "pids")}
    return subprocess.Popen(
        [sys.executable, "-m", "adws", "run", "--config", str(tmp_path / "c.toml"), "--task-json",
         '{"id": "T-1"}', "--prompt-file", str(tmp_path / "p.txt"), "--workdir", str(tmp_path), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _pids(tmp_path: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 20
    while True:
        try:
            pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
        except OSError:
            pids = []
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, "the agent never started"
        time.sleep(0.05)


@pytest.mark.parametrize(("signals", "name"), [
    ([signal.SIGTERM], "SIGTERM"),
    ([signal.SIGHUP], "SIGHUP"),
    ([signal.SIGINT], "SIGINT"),
    # Impatient: later signals do not cut the recording short (pending ones arrive in the kernel's order).
    ([signal.SIGTERM, signal.SIGTERM, signal.SIGINT], None),
])
def test_a_stopped_run_records_the_running_attempt_everywhere(tmp_path: Path, signals: list[signal.Signals],
                                                                name: str | None) -> None:
    proc = _start(tmp_path, "daemon_hang")
    agent_helpers = _pids(tmp_path, 1)
    time.sleep(0.2)
    for sig in signals:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    name = name or err.split("interrupted by ")[1].split(";")[0]
    assert name in {sig.name for sig in signals}
    assert err.endswith(f"adws: interrupted by {name}; the agent's processes were stopped\n")
    assert "Traceback" not in err
    result = json.loads(out)  # --json prints a result even so
    [attempt] = result["attempts"]
    assert (attempt["provider"], attempt["account"], attempt["outcome"], attempt["action"]) == ("h", "a", "error",
                                                                                             "stop")
    assert attempt["reason"].startswith(f"interrupted by {name}")
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["attempts"] == result["attempts"] and record["message"] == result["message"]
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("SELECT provider, account, task_id FROM usage").fetchall() == [("h", "a", "T-1")]
        assert db.execute("SELECT count(*) FROM slots").fetchone() == (0,)  # the slot was released
        # Being stopped is not the provider failing: the circuit breaker did not count it.
        assert db.execute("SELECT count(*) FROM breakers WHERE failures > 0").fetchone() == (0,)
    assert not any(alive(pid) for pid in agent_helpers)  # the daemonised helper is gone too


def test_a_signal_inside_a_shield_waits_for_its_end() -> None:
    restore = interrupts.install((signal.SIGUSR1,))
    try:
        done = []
        with pytest.raises(KeyboardInterrupt, match="SIGUSR1"), interrupts.shielded():
            os.kill(os.getpid(), signal.SIGUSR1)
            done.append("recorded")  # still runs: the signal is held
        assert done == ["recorded"]
        os.kill(os.getpid(), signal.SIGUSR1)  # after the first stop, later signals are ignored
    finally:
        restore()


def test_interruptible_lets_a_held_signal_through_at_once() -> None:
    restore = interrupts.install((signal.SIGUSR1,))
    try:
        with interrupts.shielded():
            os.kill(os.getpid(), signal.SIGUSR1)
            with pytest.raises(KeyboardInterrupt), interrupts.interruptible():
                pytest.fail("not reached: the held signal is raised on entry")
    finally:
        restore()


class Stalled(Exception):
    pass


def test_a_shield_with_a_grace_abandons_a_block_still_running_after_it() -> None:
    # The CLI's printing of a result: a stop waits for the block, but not for ever. The block is abandoned with
    # the caller's exception, the stop counts as delivered (a second signal changes nothing), and SIGALRM's
    # handler is the one from before. Bounded: the block waits at most 10 s for the 0.05 s grace to act.
    restore = interrupts.install((signal.SIGUSR1,))
    before = signal.getsignal(signal.SIGALRM)
    try:
        with pytest.raises(Stalled, match="SIGUSR1"), interrupts.shielded(grace=0.05, stalled=Stalled):
            os.kill(os.getpid(), signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.01)
            pytest.fail("the grace never abandoned the block")
        os.kill(os.getpid(), signal.SIGUSR1)  # delivered already: ignored, nothing raised
        assert signal.getsignal(signal.SIGALRM) == before
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        restore()


def test_a_shield_with_a_grace_that_ends_in_time_raises_the_held_stop() -> None:
    # Inside a shield that has one: the inner block's end disarms its timer, and the held stop is raised when the
    # outer block ends, as without a grace.
    restore = interrupts.install((signal.SIGUSR1,))
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGUSR1"), interrupts.shielded():
            with interrupts.shielded(grace=5, stalled=Stalled):
                os.kill(os.getpid(), signal.SIGUSR1)
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # disarmed: nothing fires later
        os.kill(os.getpid(), signal.SIGUSR1)  # after the first stop, later signals are ignored
    finally:
        restore()


def test_a_signal_while_the_audit_record_is_written_waits_for_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from adws.errors import Interrupted
    from tests.hostile import engine

    real = audit.append_line

    def append_while_signalled(path: object, line: object) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)  # arrives in the middle of writing the record
        real(path, line)  # type: ignore[arg-type]

    monkeypatch.setattr("adws.audit.append_line", append_while_signalled)
    restore = interrupts.install((signal.SIGUSR1,))
    try:
        with pytest.raises(Interrupted) as exc:
            engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    finally:
        restore()
    assert exc.value.signal == "SIGUSR1" and exc.value.result.success  # type: ignore[attr-defined]
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["success"] is True
