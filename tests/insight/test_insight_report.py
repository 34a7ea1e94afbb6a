from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adws.cli import main
from adws.config import load_config
from adws.insight import simulate, workload

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)


@pytest.fixture
def page(write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    config = write_config(alpha_tokens=150000)
    spec = workload.Workload(tasks_per_day=30, error_rate=0.05, unseen_use=0.1)
    tasks = workload.generate(spec, MONDAY, 3, random.Random(4))
    simulate.simulate(load_config(config), tasks, workload=spec, start=MONDAY, days=3, seed=4,
                      audit_path=str(tmp_path / "audit.jsonl"))
    out = tmp_path / "report.html"
    assert main(["report", "--html", str(out), "--config", str(config), "--audit", str(tmp_path / "audit.jsonl")]) == 0
    # quota of alpha, outcomes per tier, cost per day, fall-through
    assert capsys.readouterr().out.startswith(f"{out}: 4 plots, ")
    return out


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count('<svg class="plot"') == 4
    # Nothing is loaded from anywhere: no src, no stylesheet link, no url(); hrefs only point inside the page.
    assert not re.search(r"\bsrc\s*=", text)
    assert "<link" not in text and "url(" not in text.replace("url(#", "")
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', text))
    # The only URLs left are XML namespace names, which are identifiers, not requests.
    assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg",
                                                               "http://www.w3.org/1999/xlink"}


def test_the_same_log_gives_the_same_page(page: Path, tmp_path: Path, write_config: Callable[..., Path]) -> None:
    again = tmp_path / "again.html"
    assert main(["report", "--html", str(again), "--config", str(tmp_path / "config.toml"),
                 "--audit", str(tmp_path / "audit.jsonl")]) == 0
    assert again.read_text() == page.read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None and os.environ.get("CI") != "true",
                    reason="Chromium is not installed (CI installs it and always runs this test)")
def test_chromium_renders_every_plot_without_script_errors(page: Path, tmp_path: Path) -> None:
    browser = _chromium()
    assert browser is not None, "CI must have Chromium: .ci/run installs the Debian package"
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body is not None, done.stdout[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-plots-expected") == "4"
    assert attrs.get("data-plots-drawn") == "4"  # every plot has a size and drawn marks
    assert "data-script-errors" not in attrs
    assert "Uncaught" not in done.stderr  # console errors Chromium logged


def test_quota_table_counts_attempts_that_started_before_the_first_record(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    from adws.insight.report import build_html
    from tests.insight.conftest import attempt, record, write_audit

    config = load_config(write_config(alpha_tokens=100000))
    log = write_audit(tmp_path / "a.jsonl", [
        record([attempt("alpha", account="one", tokens=(40000, 10000), at="2026-11-18T09:00:00+00:00")],
               at="2026-11-18T10:00:00+00:00"),
        record([attempt("alpha", account="two", tokens=(90000, 6000), at="2026-11-18T11:00:00+00:00")],
               at="2026-11-18T12:00:00+00:00"),
    ])
    page = build_html(config, log)
    rows = re.findall(r"<tr><td>(\w+)</td><td>([\d.]+%)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    # Monday resets; as of the last record (Wednesday 12:00), the next reset is 4 days 12 hours away.
    assert rows == [("one", "50.0%", "", "2026-11-23 00:00 UTC", "4d 12h00m"),
                    ("two", "96.0%", "blocked (&gt;= 95%)", "2026-11-23 00:00 UTC", "4d 12h00m")]


def test_a_log_alone_gives_every_plot_but_the_quotas(page: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # As `adws stats --audit FILE`: from a directory without config.toml and without --config.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("ADWS_CONFIG", raising=False)
    out = elsewhere / "week.html"
    assert main(["report", "--audit", str(tmp_path / "audit.jsonl"), "--html", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{out}: 3 plots, ")  # outcomes, cost, fall-through
    assert captured.err == ("adws: no config.toml here and no --config: the page has no quota plots (quotas are "
                            "declared in the config)\n")
    text = out.read_text(encoding="utf-8")
    assert "no config given: quotas are declared there" in text and "; no config; audit log" in text
    # Without --audit the config is where the log is named: still required.
    assert main(["report", "--html", str(out)]) == 2
    assert "config file not found" in capsys.readouterr().err
