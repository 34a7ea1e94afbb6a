"""Tier scores (quota, latency, fit, cost), their weights, and the orders by_score and cheapest."""

from __future__ import annotations

import pytest

from adws.config.load import compile_config, parse_toml
from adws.errors import ConfigError
from adws.scoring import (
    ScoringSpec,
    TierFacts,
    Weights,
    context_factor,
    latency_score,
    order_tiers,
    quota_score,
    score_tiers,
)

DESIGN = ScoringSpec(Weights(0.4, 0.3, 0.3, 0.0), {"antigravity": Weights(0.5, 0.3, 0.2, 0.0)})


def facts(provider: str, *, percent: float | None = 0.0, latency: int | None = 500, score: int = 80,
          tokens: int = 1000, window: int | None = 200000, cost: float = 0.0) -> TierFacts:
    return TierFacts(provider, f"{provider}-model", percent, latency, "code", score, tokens, window, cost)


@pytest.mark.parametrize(("ms", "score"), [(None, 50.0), (0, 100.0), (500, 100.0), (2750, 50.0), (5000, 0.0),
                                           (9000, 0.0), (851, 100 * (5000 - 851) / 4500)])
def test_latency_score(ms: int | None, score: float) -> None:
    assert latency_score(ms) == pytest.approx(score)


def test_quota_score_is_100_minus_percent_used_within_bounds() -> None:
    assert [quota_score(p) for p in (None, 0.0, 37.5, 100.0, 130.0)] == [100.0, 100.0, 62.5, 0.0, 0.0]


def test_context_sufficiency() -> None:
    assert context_factor(100000, 200000) == 1.0  # half the window: full fit
    assert context_factor(150000, 200000) == pytest.approx(0.75)
    assert context_factor(200000, 200000) == pytest.approx(0.5)
    assert context_factor(200001, 200000) == 0.0
    assert context_factor(5, None) == 1.0


def test_design_weights_per_provider_and_every_component_shown() -> None:
    ag, copilot = score_tiers([facts("antigravity", percent=10.0, latency=851, score=80),
                               facts("copilot", percent=96.0, latency=200, score=85)], DESIGN)
    assert ag.describe() == "antigravity 88.7 = 0.5×quota 90.0 + 0.3×latency 92.2 + 0.2×fit 80.0"
    assert copilot.describe() == "copilot 57.1 = 0.4×quota 4.0 + 0.3×latency 100.0 + 0.3×fit 85.0"
    assert ag.to_dict() == {
        "provider": "antigravity", "model": "antigravity-model", "score": 88.66,
        "components": {"quota": 90.0, "latency": 92.2, "fit": 80.0, "cost": 100.0},
        "weights": {"quota": 0.5, "latency": 0.3, "fit": 0.2, "cost": 0.0},
        "notes": ["quota: 10.0% used", "latency: 851 ms", "fit: code score 80", "cost: $0 per 1K tokens"]}


def test_fit_note_names_the_context_adjustment() -> None:
    [tier] = score_tiers([facts("x", score=90, tokens=150000)], DESIGN)
    assert tier.fit == pytest.approx(67.5)
    assert tier.notes[2] == "fit: code score 90 × 0.75 (task fills 75% of the context window)"


def test_weights_that_do_not_sum_to_one_are_normalised_and_say_so() -> None:
    spec = ScoringSpec(Weights(1, 1, 0, 0))
    [tier] = score_tiers([facts("x", percent=50.0, latency=500)], spec)
    assert tier.total == pytest.approx(75.0)
    assert tier.describe() == "x 75.0 = 1×quota 50.0 + 1×latency 100.0, divided by the weights' sum 2"


def test_orders() -> None:
    tiers = [facts("antigravity", percent=99.0, latency=900, cost=0.003),
             facts("copilot", percent=0.0, latency=200, cost=0.002),
             facts("cline", percent=None, latency=150, cost=0.0),
             facts("local", percent=None, latency=5000, cost=0.0)]
    assert order_tiers(tiers, "chain", DESIGN)[0] == [0, 1, 2, 3]
    positions, scores = order_tiers(tiers, "by_score", DESIGN)
    # copilot and cline tie at 94 (chain order stands); antigravity's spent quota sinks it below local.
    assert [round(s.total, 2) for s in scores] == [43.83, 94.0, 94.0, 64.0]
    assert [tiers[i].provider for i in positions] == ["copilot", "cline", "local", "antigravity"]
    # cheapest: free tiers first (ties keep chain order), then by price.
    assert [tiers[i].provider for i in order_tiers(tiers, "cheapest", DESIGN)[0]] == [
        "cline", "local", "copilot", "antigravity"]
    with pytest.raises(ValueError, match='unknown tier order "fastest"'):
        order_tiers(tiers, "fastest", DESIGN)


def test_equal_scores_keep_chain_order() -> None:
    tiers = [facts("a"), facts("b"), facts("c")]
    assert order_tiers(tiers, "by_score", DESIGN)[0] == [0, 1, 2]


def test_weights_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one scoring weight must be > 0"):
        Weights(0, 0, 0, 0)
    with pytest.raises(ValueError, match="must be within 0-1000"):
        Weights(-1, 0, 0, 0)
    for huge in (1e308, float("inf"), float("nan"), 1000.5):
        with pytest.raises(ValueError, match="must be within 0-1000"):
            Weights(huge, 0, 0, 0)


SCORED = """
[routing.scoring]
quota = 0.4
latency = 0.3
fit = 0.3
order = "by_score"

[routing.scoring.providers.one]
quota = 0.5
latency = 0.3
fit = 0.2

[[routing.rules]]
name = "cheap"
provider = "one"
order = "cheapest"
need = { context_multiple = 2.0, margin_percent = 10 }

[providers.one]
command_template = ["one"]
prompt = "stdin"
need = { tokens = 30000, learned_runs = 40 }
usage_command = ["one-usage", "--account", "{{ account }}"]
usage_sync_interval = "10m"
wait_for_reset = 90
"""


def test_scoring_and_need_keys_compile() -> None:
    config = compile_config(parse_toml(SCORED))
    assert config.scoring == ScoringSpec(Weights(0.4, 0.3, 0.3, 0.0), {"one": Weights(0.5, 0.3, 0.2, 0.0)},
                                         "by_score")
    [rule] = config.rules
    assert (rule.tier_order, rule.need.context_multiple, rule.need.margin_percent) == (  # type: ignore[union-attr]
        "cheapest", 2.0, 10.0)
    one = config.providers["one"]
    assert (one.need.tokens, one.need.learned_runs) == (30000, 40)  # type: ignore[union-attr]
    assert (one.usage_command, one.usage_sync_seconds, one.wait_for_reset) == (
        ("one-usage", "--account", "{{ account }}"), 600.0, 90.0)


@pytest.mark.parametrize(("edit", "message"), [
    (('order = "by_score"', 'order = "by_scor"'),
     'routing → scoring → order: expected "chain", "by_score" or "cheapest", got "by_scor" (did you mean '
     '"by_score"?)'),
    (("[routing.scoring.providers.one]", "[routing.scoring.providers.onne]"),
     'routing → scoring → providers → onne: unknown provider "onne" (did you mean "one"?); providers: one'),
    (("{{ account }}", "{{ task.title }}"), None),
    (('usage_sync_interval = "10m"', 'usage_sync_interval = "10 minutes"'), None),
    (("need = { tokens = 30000, learned_runs = 40 }", "need = { tokens = 30000, context_multiple = 1.0 }"),
     "providers.one → need: give `tokens` (a fixed figure) or `context_multiple`, not both"),
])
def test_scoring_and_need_mistakes_name_their_place(edit: tuple[str, str], message: str | None) -> None:
    with pytest.raises(ConfigError) as exc:
        compile_config(parse_toml(SCORED.replace(*edit)))
    found = [str(p) for p in exc.value.problems]
    if message is None:
        assert len(found) == 1, found
    else:
        assert found == [message]


def test_fit_score_takes_the_first_table_that_knows_the_specialization_then_general() -> None:
    from adws.compiled import fit_score

    model, provider = {"code": 90}, {"docs": 40, "general": 60}
    assert fit_score("code", model, provider) == 90
    assert fit_score("docs", model, provider) == 40
    assert fit_score("ops", model, provider) == 60  # neither knows it: the first `general`
    assert fit_score("ops", {"general": 70}, provider) == 70
    assert fit_score("ops", provider) == 60  # a tier without a model: its provider's table alone
    assert fit_score("ops", {}, {}) == 0


@pytest.mark.parametrize(("edit", "scored"), [
    ((), True),  # [routing.scoring] order = "by_score"
    (('order = "by_score"', 'order = "chain"'), True),  # the rule's order = "cheapest"
    (('order = "by_score"', 'order = "chain"', 'order = "cheapest"', 'order = "chain"'), False),
])
def test_the_router_and_the_accounts_agree_on_whether_tiers_are_scored(
        edit: tuple[str, ...], scored: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """One definition (`reads_tier_scores`): a tier score reads `Ranking.first_percent` (the accounts' generation
    moves with it) and the task's exact size (the router's plan key holds it)."""
    import adws.router
    from adws.accounts import reads_tier_scores
    from adws.router import ModelRouter

    text = SCORED.replace("need = { context_multiple = 2.0, margin_percent = 10 }\n", "")
    for old, new in zip(edit[::2], edit[1::2], strict=True):
        text = text.replace(old, new, 1)
    config = compile_config(parse_toml(text))
    assert reads_tier_scores(config) is scored
    assert ModelRouter(config)._context_needs is scored
    monkeypatch.setattr(adws.router, "reads_tier_scores", lambda config: True)  # the router asks it, not a copy
    assert ModelRouter(config)._context_needs is True
