"""Config loading. `load_config` is the one entry point; it keeps a cache of compiled configs.

Validating a file needs pydantic and jinja2, which cost more start-up time than everything else `adws route`
does. A config that validated once is stored compiled (`adws.model.CompiledConfig`, plain objects) under the
user's cache directory, keyed by the file's resolved path and bytes and by the adws code itself, so an edit to
either validates afresh. Set ADWS_CONFIG_CACHE=off to disable it; ADWS_CACHE_DIR moves it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adws.model import CompiledConfig

_CACHE_FORMAT = "1"


def cache_dir() -> Path:
    explicit = os.environ.get("ADWS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adws"


def _code_stamp() -> str:
    """Changes whenever any adws source file changes (so a new validation rule is never skipped)."""
    root = Path(__file__).resolve().parent.parent
    parts = []
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        parts.append(f"{path.relative_to(root)}:{stat.st_mtime_ns}:{stat.st_size}")
    return "\n".join(parts)


def _cache_file(path: Path, data: bytes) -> Path:
    digest = hashlib.sha256()
    for part in (_CACHE_FORMAT, sys.version, str(path), _code_stamp()):
        digest.update(part.encode() + b"\0")
    digest.update(data)
    return cache_dir() / f"config-{digest.hexdigest()[:40]}.pickle"


def load_config(path: str | os.PathLike[str]) -> CompiledConfig:
    """Load, validate and compile a config file; raises ConfigError listing every problem."""
    use_cache = os.environ.get("ADWS_CONFIG_CACHE", "on").lower() not in ("off", "0", "no", "false")
    resolved = Path(path).resolve()
    if use_cache:
        try:
            data = resolved.read_bytes()
            cached = _cache_file(resolved, data)
            with open(cached, "rb") as fh:
                config: CompiledConfig = pickle.load(fh)
            return config
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
            pass  # no cache yet, or an unreadable one: validate the file
    from adws.config.load import load_file  # pydantic and jinja2: only when validating

    config = load_file(path)
    if use_cache:
        _store(_cache_file(resolved, resolved.read_bytes()), config)
    return config


def _store(target: Path, config: CompiledConfig) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(config, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)  # atomic: concurrent coordinators never read half a file
    except OSError:
        pass  # a read-only home only costs start-up time
