"""What route() returns: the target, the whole plan down the chain, what was skipped and why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adws.compiled import RuleSpec
from adws.dataclass_cache import dataclass, field
from adws.need import Need
from adws.scoring import TierScore
from adws.taskview import TaskView


@dataclass(frozen=True, slots=True)
class Step:
    """One tier of the plan: where an attempt would go, with the accounts to try in order."""

    provider: str
    model: str | None
    account: str | None
    accounts: tuple[str, ...]
    vars: Mapping[str, Any]
    model_reason: str
    need: Need | None = None  # the task's expected need on this tier: reserved on the account while it runs

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "model": self.model, "account": self.account,
               "accounts": list(self.accounts)}
        if self.need is not None:
            out["need"] = {"tokens": self.need.tokens, "margin_tokens": self.need.margin_tokens,
                           "basis": self.need.basis}
        return out


@dataclass(frozen=True, slots=True)
class Skip:
    """A candidate left out of the plan (a whole tier, or one account of a tier)."""

    provider: str
    reason: str
    account: str | None = None
    until: datetime | None = None  # when it becomes usable again, where known

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "reason": self.reason}
        if self.account is not None:
            out["account"] = self.account
        if self.until is not None:
            out["until"] = self.until.isoformat()
        return out


@dataclass(slots=True)
class Decision:
    rule: str  # a rule's name, "default" or "override"
    via: str  # "rule" | "default" | "override" | "disabled"
    plan: list[Step]
    skipped: list[Skip]
    view: TaskView
    now: datetime
    matched: RuleSpec | None = None
    override_source: str | None = None
    order: str = "chain"  # how the plan's tiers were ordered (adws.scoring)
    scores: tuple[TierScore, ...] = ()  # every tier's score, in plan order, when the order is not the chain
    _reasons: list[str] | None = field(default=None, repr=False)

    @property
    def provider(self) -> str | None:
        return self.plan[0].provider if self.plan else None

    @property
    def model(self) -> str | None:
        return self.plan[0].model if self.plan else None

    @property
    def account(self) -> str | None:
        return self.plan[0].account if self.plan else None

    @property
    def vars(self) -> Mapping[str, Any]:
        return self.plan[0].vars if self.plan else {}

    @property
    def reasons(self) -> list[str]:
        """Why this decision, in words. Built on demand: route() stays cheap when nobody reads them."""
        if self._reasons is None:
            self._reasons = self._build_reasons()
        return self._reasons

    def _build_reasons(self) -> list[str]:
        v = self.view
        out = [
            f'priority "{v.priority}" ({v.sources["priority"]})' if v.priority is not None
            else f'no priority ({v.sources["priority"]})',
            f'specialization "{v.specialization}" ({v.sources["specialization"]})',
            f"context_tokens {v.context_tokens} ({v.sources['context_tokens']})",
        ]
        if self.via == "rule" and self.matched is not None:
            out.append(f'rule "{self.matched.name}" (priority {self.matched.priority}) matched')
        elif self.via == "override":
            out.append(f"override {self.override_source}")
        elif self.via == "disabled":
            out.append("routing is disabled: defaults used")
        else:
            out.append("no rule matched: defaults used")
        if self.order != "chain":
            out.append(f"tiers ordered {self.order.replace('_', ' ')}: "
                       + ", ".join(f"{s.provider} {s.total:.1f}" for s in self.scores))
        if self.plan:
            first = self.plan[0]
            out.append(f"{first.provider}: {first.model_reason}")
            if first.need is not None:
                out.append(f"{first.provider}: {first.need.describe()}")
        else:
            out.append("nothing in the plan is usable")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "account": self.account,
            "rule": self.rule,
            "reasons": self.reasons,
            "plan": [step.to_dict() for step in self.plan],
            "skipped": [skip.to_dict() for skip in self.skipped],
            "task": {
                "id": self.view.task_id,
                "priority": self.view.priority,
                "specialization": self.view.specialization,
                "context_tokens": self.view.context_tokens,
                "context_estimated": self.view.context_estimated,
            },
            "at": self.now.isoformat(),
            **({"order": self.order, "scores": [score.to_dict() for score in self.scores]}
               if self.order != "chain" else {}),
        }
