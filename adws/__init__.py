"""adws: a declarative, TOML-driven router for coding-agent CLIs."""

from __future__ import annotations

__version__ = "0.1.0"
