"""Quota pools: selected by model globs, each counted under its own subject, checked at load."""

from __future__ import annotations

import pytest

from adws.config.load import compile_config, parse_toml
from adws.pools import governing, pool_for, subject, subjects
from tests.helpers import config_problems

POOLED = """
[providers.antigravity]
command_template = ["opencode", "run", "-m", "{{ model }}"]
prompt = "stdin"

[providers.antigravity.models."claude-sonnet-4.6"]
context_window = 200000
[providers.antigravity.models."claude-opus-thinking"]
context_window = 200000
[providers.antigravity.models."gemini-3-pro"]
context_window = 1000000

[providers.antigravity.quota]
hard_block_percent = 90

[providers.antigravity.quota.pools.claude]
models = ["claude-*"]
tokens = 300000
reset = "0 0 * * 0"

[providers.antigravity.quota.pools.gemini]
models = ["Gemini-*"]
tokens = 500000
window = "5h"
alert_percent = [50]

[[providers.antigravity.accounts]]
name = "ag-01"
"""


def test_pools_compile_with_inherited_hard_block_and_alerts() -> None:
    quota = compile_config(parse_toml(POOLED)).providers["antigravity"].quota
    assert quota is not None and not quota.limited
    claude, gemini = quota.pools
    assert (claude.name, claude.models, claude.quota.tokens, claude.quota.reset) == (
        "claude", ("claude-*",), 300000, "0 0 * * 0")
    assert (claude.quota.hard_block_percent, claude.quota.alert_percent) == (90, (80.0, 95.0))
    assert (gemini.quota.window_seconds, gemini.quota.hard_block_percent, gemini.quota.alert_percent) == (
        5 * 3600, 90, (50.0,))


def test_a_model_draws_on_the_pool_its_globs_select() -> None:
    quota = compile_config(parse_toml(POOLED)).providers["antigravity"].quota
    assert pool_for(quota, "claude-sonnet-4.6").name == "claude"  # type: ignore[union-attr]
    assert pool_for(quota, "GEMINI-3-pro").name == "gemini"  # type: ignore[union-attr]  # case-insensitive
    assert pool_for(quota, "o3-mini") is None
    assert governing(quota, "ag-01", "claude-opus-thinking").subject == "ag-01/claude"
    # No pool and no limits of the quota's own: not metered.
    assert governing(quota, "ag-01", "o3-mini").quota is None
    assert [s for s, _, _ in subjects(quota, "ag-01")] == ["ag-01/claude", "ag-01/gemini"]


def test_subjects_round_trip() -> None:
    quota = compile_config(parse_toml(POOLED)).providers["antigravity"].quota
    assert quota is not None
    assert subject("ag-01", "claude") == "ag-01/claude"
    assert subject("ag-01", None) == "ag-01"


def test_an_unpooled_quota_governs_its_account_directly() -> None:
    text = POOLED.split("[providers.antigravity.quota]")[0] + \
        ('[providers.antigravity.quota]\ntokens = 1000\nreset = "0 0 * * 0"\n'
         '[[providers.antigravity.accounts]]\nname = "x"\n')
    quota = compile_config(parse_toml(text)).providers["antigravity"].quota
    g = governing(quota, "x", "gemini-3-pro")
    assert (g.subject, g.pool, g.quota) == ("x", None, quota)


def test_a_model_in_no_pool_of_an_unlimited_quota_is_an_error() -> None:
    text = POOLED.replace('[providers.antigravity.models."gemini-3-pro"]',
                          '[providers.antigravity.models."o3-mini"]\ncontext_window = 200000\n'
                          '[providers.antigravity.models."gemini-3-pro"]')
    assert config_problems(text) == [
        'providers.antigravity.quota → pools: model "o3-mini" is selected by no pool and the quota has no limits '
        "of its own: add it to a pool's models or give the quota tokens, requests or cost_usd"]


def test_a_model_in_two_pools_is_an_error() -> None:
    text = POOLED.replace('models = ["Gemini-*"]', 'models = ["Gemini-*", "*-sonnet-*"]')
    assert config_problems(text) == [
        'providers.antigravity.quota → pools: model "claude-sonnet-4.6" is selected by pools claude, gemini: '
        "a model draws on one pool"]


@pytest.mark.parametrize(("edit", "message"), [
    (('models = ["claude-*"]\n', 'models = ["claude-*"]\nwindow = "5h"\n'),
     "providers.antigravity.quota → pools → claude: give `reset` (a cron expression) or `window` (a rolling "
     "period), not both"),
    (("tokens = 300000\n", ""),
     "providers.antigravity.quota → pools → claude: give at least one limit: `tokens`, `requests` or `cost_usd`"),
    (('models = ["claude-*"]', "models = []"),
     "providers.antigravity.quota → pools → claude → models: must not be empty"),
    (('reset = "0 0 * * 0"', 'reset = "0 0 * * 8"'), None),
    (("hard_block_percent = 90\n", 'hard_block_percent = 90\nreset = "0 0 * * 0"\n'),
     "providers.antigravity.quota: a period without a limit limits nothing: give `tokens`, `requests` or "
     "`cost_usd`"),
    (('name = "ag-01"', 'name = "ag/claude"'),
     'providers.antigravity.accounts[0] (name="ag/claude") → name: account name "ag/claude" reads as account '
     '"ag", pool "claude": rename it'),
])
def test_pool_mistakes_name_their_place(edit: tuple[str, str], message: str | None) -> None:
    found = config_problems(POOLED.replace(*edit))
    if message is None:  # a bad cron expression: its message comes from the cron module
        assert len(found) == 1 and found[0].startswith("providers.antigravity.quota → pools → claude → reset: ")
    else:
        assert found == [message]
