"""Is a provider usable at all on this machine? (enabled, its program present, its API key set)

Looking a program up on PATH costs a directory scan, so each answer is cached for the life of the engine;
`refresh()` forgets them (e.g. after installing a CLI). Environment variables are read on every call: they are
a dictionary lookup, and a coordinator may set a key between tasks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping

from adws.compiled import ProviderSpec

# The ends of why_not's reasons for a program that is not there (`not_installed` reads them).
_NOT_FOUND = " not found or not executable"
_NOT_ON_PATH = " not on PATH"


def not_installed(reason: str) -> bool:
    """Whether a skip reason (`Availability.why_not`'s words) says the provider's program is not installed."""
    return reason.endswith((_NOT_ON_PATH, _NOT_FOUND))


class Availability:
    def __init__(self, environ: Mapping[str, str] | None = None,
                 which: Callable[[str], str | None] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        # The children get `environ`, so a program is looked up on that environment's PATH.
        self._which = which or self._on_path
        self._found: dict[str, str | None] = {}

    def _on_path(self, name: str) -> str | None:
        import shutil  # here: `adws route` on a warm cache mostly answers from a cached lookup, never needing it

        return shutil.which(name, path=self.environ.get("PATH"))

    def refresh(self) -> None:
        self._found.clear()

    def locate(self, executable: str) -> str | None:
        try:
            return self._found[executable]
        except KeyError:
            pass
        if os.sep in executable:
            found = executable if os.path.isfile(executable) and os.access(executable, os.X_OK) else None
        else:
            found = self._which(executable)
        self._found[executable] = found
        return found

    def why_not(self, provider: ProviderSpec, keys_set: Collection[str] | None = None) -> str | None:
        """None when usable, else the reason in words. `keys_set`: which key variables are set, when the caller
        has read them already (the router's plan input); else they are read from the environment."""
        if not provider.enabled:
            return "disabled in config"
        if self.locate(provider.executable) is None:
            if os.sep in provider.executable:
                return f"executable {provider.executable}{_NOT_FOUND}"
            return f"command '{provider.executable}'{_NOT_ON_PATH}"
        # Accounts with keys of their own can still run without the provider's: each is checked when ranked.
        if provider.requires_api_key:
            present = keys_set if keys_set is not None else [v for v in provider.key_vars if self.environ.get(v)]
            if not any(v in present for v in provider.key_vars):
                return f"API-key variable {provider.api_key_env} is not set"
        return None
