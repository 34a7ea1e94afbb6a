"""The audit log: whole JSON lines, also when several processes append at once."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adws import audit


def _writer(path: str, who: int, count: int) -> None:
    for n in range(count):
        # Lines well over PIPE_BUF (4 KiB), where unlocked appends from several writers could interleave.
        audit.append(path, {"who": who, "n": n, "pad": "x" * 20_000})


def test_concurrent_processes_never_interleave_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "logs" / "audit.jsonl")
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(path, who, 50)) for who in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line parses whole
    assert len(records) == 200
    for who in range(4):
        assert [r["n"] for r in records if r["who"] == who] == list(range(50))


def test_read_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit.append(path, {"a": 1})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"b": ')  # a writer killed mid-line
    assert audit.read(path) == [{"a": 1}]
    assert audit.read(tmp_path / "missing.jsonl") == []


def test_read_skips_hostile_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with open(path, "w", encoding="utf-8") as fh:  # a 5000-digit integer (ValueError) and 100,000 levels of nesting
        fh.write('{"n": ' + "9" * 5000 + "}\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    audit.append(path, {"a": 1})
    assert audit.read(path) == [{"a": 1}]


def test_file_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit.append(path, {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_append_after_a_torn_tail_starts_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit.append(path, {"a": 1})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"b": ' + "x" * 100)  # a writer killed mid-line (SIGKILL, a machine crash)
    audit.append(path, {"c": 3})
    assert audit.read(path) == [{"a": 1}, {"c": 3}]  # the torn line alone is lost, not the record after it
    audit.append(tmp_path / "fresh.jsonl", {"d": 4})
    assert (tmp_path / "fresh.jsonl").read_text(encoding="utf-8") == '{"d": 4}\n'  # no newline before a first line


def test_a_write_that_fails_part_way_leaves_no_torn_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    audit.append(path, {"a": 1})
    before = path.read_bytes()
    real_write = os.write

    def short_then_full(fd: int, data: bytes | memoryview) -> int:  # what a disk with 8 KiB free does
        if len(data) > 8192:
            return real_write(fd, data[:8192])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError, match="No space left"):
        audit.append(path, {"x": "x" * 30_000})
    monkeypatch.setattr(os, "write", real_write)
    assert path.read_bytes() == before  # cut back to where the failed record began
    audit.append(path, {"c": 3})
    assert audit.read(path) == [{"a": 1}, {"c": 3}]


_FSIZE_CHILD = """
import resource, sys
from adws import audit
path = sys.argv[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
try:
    audit.append(path, {"x": "x" * 30000})
except OSError as exc:
    print(exc.errno)
"""


def test_a_file_size_limit_leaves_no_torn_line(tmp_path: Path) -> None:
    # The kernel's own partial write: RLIMIT_FSIZE lets the first 8 KiB in, then refuses (EFBIG).
    path = tmp_path / "audit.jsonl"
    audit.append(path, {"a": 1})
    before = path.read_bytes()
    done = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(path), str(len(before) + 8192)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(errno.EFBIG)
    assert path.read_bytes() == before
    audit.append(path, {"c": 3})
    assert audit.read(path) == [{"a": 1}, {"c": 3}]
