"""Config loading. `load_config` is the one entry point; it keeps a cache of compiled configs.

Validating a file needs pydantic and jinja2, which cost more start-up time than everything else `adws route`
does. A config that validated once is stored compiled (`adws.compiled.CompiledConfig` as JSON data, see
`adws.config.codec`) under the user's cache directory, keyed by the file's resolved path and bytes and by the
adws code itself, so an edit to either validates afresh. Set ADWS_CONFIG_CACHE=off to disable it;
ADWS_CACHE_DIR moves it (set but empty, it is refused, as the state variables are: see `cache_dir`).

A cache entry is data that is verified or ignored, never executed:
- the directory and the file must belong to the user running adws and be writable by nobody else (no
  group/other write bit); the file is opened without following a symlink. Otherwise the cache is not read,
  and nothing is written into such a directory;
- the file names its format and its key, and carries a SHA-256 over the key and the content: a truncated,
  altered or misplaced file is ignored;
- the content is decoded against the declared types of the compiled config (never pickle); anything that does
  not fit is ignored. Rule conditions are compiled again from their TOML; cron expressions take the expansion
  croniter gave them at validation, and cron quota resets the periods around noon UTC of the day of
  validation (`adws.quota.stored_bounds`), so a warm start imports neither pydantic, jinja2 nor croniter (until a
  decision needs a quota period beyond the stored ones).
An ignored entry costs one validation of the file (and is then replaced); it never prints a traceback.

A validation after an edit takes what Jinja and croniter said about each template and cron expression the edit
left as it was from `adws.config.verdicts` (same directory, same rules), so it usually imports neither.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from hashlib import sha256

    from adws.compiled import CompiledConfig
else:
    try:  # CPython's built-in SHA-256: importing hashlib also loads OpenSSL, a few ms of every start-up
        from _sha2 import sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.11
        except ImportError:
            from hashlib import sha256

_FORMAT = "adws-compiled-config/3"
_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, RecursionError, ArithmeticError)


CACHE_ENV = "ADWS_CACHE_DIR"


def cache_dir() -> Path:
    """The cache directory: $ADWS_CACHE_DIR, else $XDG_CACHE_HOME/adws, else ~/.cache/adws.

    Raises AdwsError when ADWS_CACHE_DIR is set but empty: a mistake (`ADWS_CACHE_DIR=$UNSET`) that, taken as
    unset, would read and write the default directory the variable was set to keep the process away from (as
    ADWS_STATE_PATH and ADWS_CONFIG set empty are refused: see adws.state.check_environment and
    adws.cli.config_path).
    """
    from adws.errors import set_or_unset

    explicit = set_or_unset(os.environ, CACHE_ENV, "a directory for adws's cache",
                            "~/.cache/adws (ADWS_CONFIG_CACHE=off turns the cache off)")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adws"


def tree_stamp(root: str, suffixes: tuple[str, ...], strip: int = 0) -> list[str]:
    """"path:mtime_ns:size" of every file under `root` whose name ends in one of `suffixes` (`__pycache__` left
    out), each path without its first `strip` characters; in no particular order. What the caches key on to
    notice that code changed."""
    parts = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                    stack.append(entry.path)
                elif entry.name.endswith(suffixes):
                    info = entry.stat()
                    parts.append(f"{entry.path[strip:]}:{info.st_mtime_ns}:{info.st_size}")
    return parts


@functools.cache
def _code_stamp() -> str:
    """Changes whenever any adws source file changes (so a new validation rule is never skipped). Read once per
    process: the code a process runs does not change under it, and a hot reload need not scan the files again."""
    root = str(Path(__file__).resolve().parent.parent)
    # Paths relative to the package (entry paths are root + "/" + the relative path: no os.path.relpath).
    return "\n".join(sorted(tree_stamp(root, (".py",), len(root) + 1)))


def digest_of(*parts: str) -> Any:
    """A SHA-256 (hashlib's object, to update further) over `parts`, each followed by a NUL byte."""
    return feed(sha256(), *parts)


def feed(digest: Any, *parts: str) -> Any:
    """`digest` updated with `parts`, each followed by a NUL byte (as `digest_of` hashes them); returned."""
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest


def _key(path: Path, data: bytes) -> str:
    digest = digest_of(_FORMAT, sys.version, str(path), _code_stamp())
    digest.update(data)
    key: str = digest.hexdigest()
    return key


def _entry(key: str) -> Path:
    return cache_dir() / f"config-{key[:40]}.json"


def _safe(info: os.stat_result) -> bool:
    """Ours, and writable by no one else."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _seal(key: str, payload: bytes) -> str:
    return sha256(key.encode() + b"\0" + payload).hexdigest()


def read_sealed(path: Path, key: str, fmt: str) -> bytes | None:
    """The payload of a cache file written by `write_sealed` with this `key` and format `fmt`; None when there is
    none or it does not pass every check (ownership and mode of the directory and file, no symlink, size, the
    header naming `fmt` and `key`, the SHA-256 seal over key and payload)."""
    try:
        if not _safe(os.stat(path.parent)):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode) or not _safe(info) or info.st_size > 64 * 1024 * 1024:
                return None
            blob = fh.read()
        header_line, _, payload = blob.partition(b"\n")
        header = json.loads(header_line)
    except _READ_ERRORS:
        return None
    if (type(header) is not dict or header.get("format") != fmt or header.get("key") != key
            or header.get("sha256") != _seal(key, payload)):
        return None
    return payload


def read_entry(key: str) -> CompiledConfig | None:
    """The cached config for `key`, or None when there is none or it does not pass every check."""
    payload = read_sealed(_entry(key), key, _FORMAT)
    if payload is None:
        return None
    try:
        from adws.compiled import CompiledConfig
        from adws.config.codec import decode
        from adws.cron import already_checked
        from adws.quota import remember_bounds

        data = json.loads(payload)
        if type(data) is not dict or sorted(data) != ["config", "cron", "quota_bounds"] \
                or type(data["cron"]) is not dict:
            return None
        with already_checked(data["cron"]):  # cron expressions as croniter expanded them when validated
            config: CompiledConfig = decode(data["config"], CompiledConfig)
        if not remember_bounds(data["quota_bounds"]):
            return None
        return config
    except _READ_ERRORS:
        return None


def _quota_bounds(config: CompiledConfig) -> list[list[object]]:
    """The periods of every cron quota reset in `config` around now (adws.quota.stored_bounds, taken around
    noon UTC of today: each (expression, zone)'s are remembered for the day by adws.config.verdicts, so an edit
    needs no croniter for them); none when computing them fails (then croniter answers at routing time, as
    without the cache)."""
    from datetime import UTC, datetime

    from adws.config.verdicts import remembered
    from adws.quota import stored_bounds

    resets: list[tuple[str, str]] = []
    for provider in config.providers.values():
        for account in provider.runs_as:
            quotas = [account.quota] if account.quota is not None else []
            for quota in quotas:  # its pools' quotas are appended, and visited too
                quotas += [pool.quota for pool in quota.pools]
                if quota.reset is not None:
                    resets.append((quota.reset, quota.timezone))
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    out: list[list[object]] = []
    try:
        for expr, zone in dict.fromkeys(resets):
            periods = remembered("cron periods", lambda: repr((expr, zone, noon.isoformat())),  # noqa: B023
                                 lambda: stored_bounds([(expr, zone)], noon)[0][2],  # noqa: B023
                                 _periods)
            out.append([expr, zone, periods])
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return []
    return out


def _periods(value: Any) -> list[list[int]] | None:
    """Periods as stored_bounds gives them for one expression (the shape adws.quota.remember_bounds takes), or
    None."""
    from adws.quota import valid_periods

    return value if valid_periods(value) else None


def write_entry(key: str, config: CompiledConfig, quota_bounds: list[list[object]] | None = None) -> bool:
    """Store `config` under `key`, with `quota_bounds` (`_quota_bounds(config)` when None); False when it cannot
    be stored (then every load validates)."""
    from adws.compiled import CompiledConfig
    from adws.config.codec import CacheError, decode, encode
    from adws.cron import expansions

    try:
        data = encode(config, CompiledConfig)
        # Only what reads back as the same data is stored: a field the codec does not carry faithfully costs
        # start-up time, never a wrong decision. (Compared as data: compiled conditions hold objects such as
        # operator.attrgetter that do not compare equal to their twins; they are rebuilt from compared data.)
        if encode(decode(data, CompiledConfig), CompiledConfig) != data:
            return False
        if quota_bounds is None:
            quota_bounds = _quota_bounds(config)
        payload = json.dumps({"config": data, "cron": expansions(), "quota_bounds": quota_bounds},
                             ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode("utf-8", "surrogatepass")
    except (CacheError, RecursionError, ValueError, TypeError):
        return False
    return write_sealed(_entry(key), key, _FORMAT, payload)


def write_sealed(path: Path, key: str, fmt: str, payload: bytes) -> bool:
    """Write `payload` to `path` (in the cache directory) under a header naming `fmt` and `key` with the seal
    `read_sealed` checks; atomically, mode 0600. False when it cannot be written."""
    header = json.dumps({"format": fmt, "key": key, "sha256": _seal(key, payload)}).encode()
    import tempfile

    directory = path.parent
    try:
        from adws.files import make_private_dirs

        make_private_dirs(directory)
        if not _safe(os.stat(directory)):
            return False  # someone else could plant or swap entries here: do not feed it
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(header + b"\n" + payload)
            os.replace(tmp, path)  # atomic: concurrent coordinators never read half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False  # a read-only home only costs start-up time
    return True


_SKIP_PLUGIN_SCAN = False


def skip_pydantic_plugin_scan() -> None:
    """Ask that the next validation of a config in this process, when it runs with no other thread, does not
    scan the installed packages for pydantic plugins (a scan of every distribution's entry points, paid once per
    process; adws's config models are not data a plugin is for). The `adws` command asks it: it validates its
    config before it starts any thread or agent. It sets pydantic's documented switch PYDANTIC_DISABLE_PLUGINS
    only for that validation (unless the variable is set already) and takes it out again, so no agent started
    later inherits it. The request is for the first load only: when that load finds its config in the cache,
    nothing is validated and the request lapses. The validators built without the scan stay so for the life of
    the process (pydantic builds each once), so a later reload in it does not scan either. That validation does
    not import pydantic's plugin loader at all (`_validators_without_plugins`)."""
    global _SKIP_PLUGIN_SCAN
    _SKIP_PLUGIN_SCAN = True


def _validate_file(path: str | os.PathLike[str], data: bytes | None) -> CompiledConfig:
    from adws.config.load import load_file  # pydantic and jinja2: only when validating

    global _SKIP_PLUGIN_SCAN
    skip, _SKIP_PLUGIN_SCAN = _SKIP_PLUGIN_SCAN, False
    threading = sys.modules.get("threading")  # without it imported, no thread was started from Python
    if not skip or "PYDANTIC_DISABLE_PLUGINS" in os.environ \
            or (threading is not None and threading.active_count() != 1):
        return load_file(path, data)
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"  # read as each validator is built (pydantic.plugin)
    try:
        with _validators_without_plugins():
            return load_file(path, data)
    finally:
        del os.environ["PYDANTIC_DISABLE_PLUGINS"]


# The parameters of pydantic's create_schema_validator that `_validators_without_plugins` stands in for.
_CREATE_SCHEMA_VALIDATOR = ("schema", "schema_type", "schema_type_module", "schema_type_name", "schema_kind", "config",
                            "plugin_settings", "_use_prebuilt")


@contextlib.contextmanager
def _validators_without_plugins() -> Iterator[None]:
    """Inside, pydantic builds a model's validator as it does when no plugin is installed, without first
    importing its plugin loader, which imports importlib.metadata (and with it email, zipfile, csv...) at module
    level even when plugins are disabled: ~70 M instructions, a fifth of a validation after a config edit.

    pydantic's models call `create_schema_validator` (pydantic.plugin._schema_validator) through the name
    `pydantic._internal._model_construction` imported it under; with no plugin it returns
    `SchemaValidator(schema, config, _use_prebuilt=...)`. Only while plugins are disabled for this validation
    and no other thread runs (`_validate_file`), that name stands for a function returning exactly that. The
    names are pydantic's private ones: if they are not as expected (another pydantic version: the function
    elsewhere, or with other parameters), nothing is replaced and the loader is imported as before;
    tests/config/test_template_checks.py fails then, so that it is noticed."""
    try:
        from pydantic._internal import _model_construction
        from pydantic.plugin import _schema_validator
        from pydantic_core import CoreConfig, CoreSchema, SchemaValidator
    except ImportError:
        yield
        return
    import inspect

    names = vars(_model_construction)
    original = names.get("create_schema_validator")
    own = getattr(_schema_validator, "create_schema_validator", None)
    if original is not own or not callable(own) or "pydantic.plugin._loader" in sys.modules:
        yield  # another pydantic, someone else's stand-in, or the loader is here anyway: nothing to spare
        return
    try:
        parameters = tuple(inspect.signature(own).parameters)
    except (TypeError, ValueError):  # no signature to read: not the function this stands in for
        parameters = ()
    if parameters != _CREATE_SCHEMA_VALIDATOR:
        yield
        return

    def without_plugins(schema: CoreSchema, schema_type: Any, schema_type_module: str, schema_type_name: str,
                        schema_kind: Any, config: CoreConfig | None = None,
                        plugin_settings: dict[str, Any] | None = None,
                        _use_prebuilt: bool = True) -> SchemaValidator:
        return SchemaValidator(schema, config, _use_prebuilt=_use_prebuilt)

    try:
        names["create_schema_validator"] = without_plugins  # inside the try: an interruption restores it too
        yield
    finally:
        names["create_schema_validator"] = original


def load_config(path: str | os.PathLike[str]) -> CompiledConfig:
    """Load, validate and compile a config file; raises ConfigError listing every problem, and AdwsError when
    ADWS_CACHE_DIR is set but empty (see `cache_dir`; refused even with the cache off, as ADWS_STATE_PATH set
    empty is refused whatever the backend)."""
    cache_dir()  # before anything is read: the refusal must not depend on which cache entries exist
    use_cache = os.environ.get("ADWS_CONFIG_CACHE", "on").lower() not in ("off", "0", "no", "false")
    resolved = Path(path).resolve()
    key = data = None
    if use_cache:
        try:
            from adws.inputs import MAX_CONFIG_BYTES, read_bounded

            data = read_bounded(resolved, MAX_CONFIG_BYTES, "a config file", str(path))
        except OSError:
            data = None  # unreadable or over its bound: validation says why
        if data is not None:
            key = _key(resolved, data)
            cached = read_entry(key)
            if cached is not None:
                global _SKIP_PLUGIN_SCAN
                _SKIP_PLUGIN_SCAN = False  # the request was for this first load (skip_pydantic_plugin_scan)
                return cached
    # The bytes read for the key are the ones validated, so the entry stored under that key is always theirs
    # (an edit landing meanwhile gets its own key at the next load).
    if key is None:
        return _validate_file(path, data)
    from adws.config.verdicts import remembering
    from adws.quota import remember_bounds

    with remembering():  # template and cron checks that an edit leaves as they were need no Jinja, no croniter
        config = _validate_file(path, data)
        bounds = _quota_bounds(config)
        write_entry(key, config, bounds)
    # This process routes with the periods the entry stores, as the next one reading it will: a route soon after
    # an edit needs no croniter either (the periods are the remembered ones when the edit left the resets alone).
    remember_bounds(bounds)
    return config
