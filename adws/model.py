"""Deprecated: the compiled configuration lives in `adws.compiled` (a model is an LLM model everywhere else in
adws). This alias keeps older imports working for one release."""

from __future__ import annotations

from adws.compiled import (
    IMPLICIT_ACCOUNT as IMPLICIT_ACCOUNT,
)
from adws.compiled import (
    Account as Account,
)
from adws.compiled import (
    AccountSpec as AccountSpec,
)
from adws.compiled import (
    BreakerSpec as BreakerSpec,
)
from adws.compiled import (
    CompiledConfig as CompiledConfig,
)
from adws.compiled import (
    IntakeSpec as IntakeSpec,
)
from adws.compiled import (
    ModelSpec as ModelSpec,
)
from adws.compiled import (
    ProviderSpec as ProviderSpec,
)
from adws.compiled import (
    QuotaSpec as QuotaSpec,
)
from adws.compiled import (
    RetrySpec as RetrySpec,
)
from adws.compiled import (
    RuleSpec as RuleSpec,
)
from adws.compiled import (
    ScenarioSpec as ScenarioSpec,
)
from adws.compiled import (
    resolve_accounts as resolve_accounts,
)
