"""The prepared form of a task that conditions read: everything normalised once per decision."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adws.dataclass_cache import dataclass

# The declared order of priorities, highest first; conditions compare ranks.
PRIORITY_RANK: dict[str, int] = {"critical": 3, "high": 2, "normal": 1, "low": 0}
NO_PRIORITY_RANK = -1  # a task without a priority: below every declared one, and matched by no priority condition


@dataclass(slots=True)
class TaskView:
    task_id: str | None
    number: int | None
    title: str
    labels: frozenset[str]  # lowercased: GitHub compares labels case-insensitively
    priority: str | None  # None: none given and no default_priority declared
    priority_rank: int
    retry_count: int
    specialization: str
    context_tokens: int
    context_estimated: bool
    attrs: Mapping[str, Any]
    local_now: datetime  # `now` in the routing timezone
    hour: int
    sources: Mapping[str, str]  # how priority / specialization / context_tokens were decided, for reasons
