"""An account whose credentials were rejected cools down: for AUTH_COOLDOWN, or until its key variable changes.

Without it, a rejected call books nothing, so `least_used` would pick the account with the dead key first again
for every following task.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from adws.accounts import AUTH_COOLDOWN, credential_fingerprint
from adws.compiled import Account
from adws.engine import Engine
from adws.reports import providers_report, quota_report, render_providers, render_quota
from tests.helpers import CLAUDE_CONFIG, NOW, Clock, fake_env

CONFIG = CLAUDE_CONFIG.replace("TIMEOUT", "30")


def engine_with(make_engine: Callable[..., Engine], env: dict[str, str], clock: Clock) -> Engine:
    return make_engine({**env, "KEY_A": "sk-secret-aaaaaaaa", "KEY_B": "sk-secret-bbbbbbbb"}, CONFIG, clock=clock)


def test_rejected_credentials_cool_the_account_down_and_the_next_task_goes_elsewhere(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    clock = Clock(NOW)
    engine = engine_with(make_engine, fake_env(tmp_path, claude_a="auth", claude_b="success"), clock)
    first = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert [(a.account, a.outcome) for a in first.attempts] == [("a", "auth"), ("b", "success")]

    decision = engine.route({"title": "t2"}, now=NOW + timedelta(minutes=1))
    assert decision.plan[0].accounts == ("b",)  # not "a" first again, although "a" booked nothing
    skip = next(s for s in decision.skipped if s.account == "a")
    assert skip.reason.startswith("cooling down: auth (credentials ")
    assert skip.reason.endswith("rejected; lifted when KEY_A changes)")
    assert "sk-secret" not in skip.reason  # a hash of the key, never the key
    assert skip.until == NOW + AUTH_COOLDOWN

    # `adws providers` and `adws quota` say so too.
    providers = {row["name"]: row for row in providers_report(engine, NOW + timedelta(minutes=1))}
    accounts = {a["name"]: a for a in providers["claude"]["accounts"]}
    assert accounts["a"]["blocked"].startswith("cooling down: auth")
    assert "b" in accounts and "blocked" not in accounts["b"]
    assert "\n    a: cooling down: auth (credentials" in render_providers(list(providers.values()))
    rows = {(r["provider"], r["account"]): r for r in quota_report(engine, NOW + timedelta(minutes=1))}
    assert rows[("claude", "a")]["cooldown_reason"].startswith("auth (credentials")
    assert "(auth (credentials " in render_quota(list(rows.values()))


def test_a_new_key_lifts_the_cooldown_at_once(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    clock = Clock(NOW)
    env = {**fake_env(tmp_path, claude_a="auth", claude_b="success"), "KEY_A": "sk-secret-aaaaaaaa",
           "KEY_B": "sk-secret-bbbbbbbb"}
    engine = make_engine(env, CONFIG, clock=clock)
    engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    later = NOW + timedelta(minutes=1)
    assert engine.route({"title": "t2"}, now=later).plan[0].accounts == ("b",)

    env["KEY_A"] = "sk-secret-renewed1"  # the same dict the engine reads its environment from
    decision = engine.route({"title": "t2"}, now=later)
    assert set(decision.plan[0].accounts) == {"a", "b"}
    assert not [s for s in decision.skipped if s.account == "a"]
    rows = {(r["provider"], r["account"]): r for r in quota_report(engine, later)}
    assert rows[("claude", "a")]["cooldown_until"] is None

    env["KEY_A"] = "sk-secret-aaaaaaaa"  # the rejected key again: still rejected
    assert engine.route({"title": "t2"}, now=later).plan[0].accounts == ("b",)


def test_without_a_key_variable_the_declared_time_applies(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    # The backup tier (Copilot's own login, no key variable) is rejected: it waits out AUTH_COOLDOWN.
    clock = Clock(NOW)
    env = fake_env(tmp_path, claude="auth", copilot="auth")
    engine = engine_with(make_engine, env, clock)
    engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    during = engine.route({"title": "t2"}, now=NOW + AUTH_COOLDOWN - timedelta(minutes=1))
    assert [s.reason for s in during.skipped if s.provider == "backup"] == ["cooling down: auth"]
    providers = {row["name"]: row for row in providers_report(engine, NOW + timedelta(minutes=1))}
    assert providers["backup"]["blocked"] == "cooling down: auth"
    # Its only account is out, so the tier is: the status line says why and until when.
    assert providers["backup"]["status"] == "unavailable"
    assert "backup (tier 2): UNAVAILABLE: cooling down: auth (back at " in render_providers([providers["backup"]])
    after = engine.route({"title": "t2"}, now=NOW + AUTH_COOLDOWN + timedelta(seconds=1))
    assert not [s for s in after.skipped if s.provider == "backup"]


def test_the_fingerprint_names_the_value_not_the_key() -> None:
    account = Account("a", 0, True, False, {}, "KEY_A", None, ("KEY_A",), None)
    one = credential_fingerprint(account, {"KEY_A": "sk-1"})
    assert one is not None and len(one) == 12 and one != credential_fingerprint(account, {"KEY_A": "sk-2"})
    assert credential_fingerprint(account, {}) is None


@pytest.mark.parametrize("scenario", ["auth", "limit_reset", "quota_exhausted"])
def test_a_rejected_attempt_is_an_estimate_of_nothing_and_does_not_flag_the_account(
        scenario: str, tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    # The attempt says its (zero) figures were not reported by the CLI (shared/real-cli's oracle: `usage:
    # estimated`), but an estimate of nothing is exact in the ledger: `adws quota` shows no `~` for it.
    clock = Clock(NOW)
    engine = engine_with(make_engine, fake_env(tmp_path, claude_a=scenario, claude_b="success"), clock)
    first = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert first.attempts[0].outcome != "success"
    usage = first.attempts[0].usage
    assert usage is not None and usage.total_tokens == 0 and not usage.consumed
    rows = {(r["provider"], r["account"]): r for r in quota_report(engine, NOW + timedelta(minutes=1))}
    assert rows[("claude", "a")]["estimated"] is False
    row_line = next(line for line in render_quota([rows[("claude", "a")]]).splitlines() if "claude/a" in line)
    assert "~" not in row_line


def test_an_estimate_of_nothing_is_kept_exact_in_the_ledger() -> None:
    from adws.attempt import Usage

    refused = Usage(requests=0, estimated=True)  # what booked_usage gives a refused call the CLI reported nothing of
    assert refused.for_ledger() == Usage(0, 0, 0, 0.0, estimated=False)
    guessed = Usage(1, 120, 30, 0.0, estimated=True)
    assert guessed.for_ledger() is guessed  # a real estimate stays flagged
    reported = Usage(0, 0, 0, 0.0)
    assert reported.for_ledger() is reported

