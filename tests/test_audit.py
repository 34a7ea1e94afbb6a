"""The audit log: whole JSON lines, also when several processes append at once."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

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
