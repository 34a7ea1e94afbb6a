"""The embedded state store: one SQLite file shared by every coordinator process on a machine.

Why it is safe for several processes at once:
- WAL mode, so readers never block the writer and a process killed mid-write leaves at most an
  uncommitted tail in the WAL that the next opener discards;
- every write runs inside `BEGIN IMMEDIATE`, which takes the write lock before reading, so
  read-modify-write operations (cursor, breaker, concurrency slots) never lose an update and never
  hit a late "database is locked" on lock upgrade;
- `busy_timeout` makes a writer wait for the lock instead of failing;
- schema creation runs in the same kind of transaction and is guarded by `PRAGMA user_version`, so
  processes opening a fresh file together create it exactly once. A file from an older adws is upgraded
  in place the same way: the migrations from its version on run in one transaction (`_MIGRATIONS`).

`synchronous = NORMAL`: in WAL mode a crash of the process (kill -9) loses nothing that was committed;
only a power loss may drop the last few commits, never corrupt the file. Usage counters can afford that,
and it is what makes > 1,000 commits/s possible on ordinary disks.

Threads: one store may be shared by threads (an Engine in a thread pool): its one connection is opened with
`check_same_thread=False` and every statement or transaction runs under the store's lock, so a transaction of
one thread never interleaves with another's. Open one store per process after a fork.
"""

from __future__ import annotations

import functools
import math
import os
import shlex
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from adws.attempt import Usage
from adws.state import base
from adws.state.base import (
    BREAKER_STATES,
    CHANGE_KINDS,
    DEFAULT_PATH,
    MAX_COUNT,
    MAX_STORED,
    ROLLUP_SECONDS,
    BreakerState,
    ChangePoller,
    Closing,
    Cooldown,
    Observation,
    RunRecord,
    RunsImported,
    StateStoreError,
    UsageChanges,
    UsageCursor,
    UsageRecord,
    check_lease,
    check_reservation,
    check_usage,
    damaged_entry,
    hour_start,
    one_line,
    shell_word,
    stored_amount,
    stored_at,
    stored_count,
    stored_epoch,
    stored_flag,
    stored_lease_end,
    stored_text,
    stored_usage,
    to_epoch,
    typable,
)

_ID = itemgetter(0)
T = TypeVar("T")

# Separate statements (not one script): executescript() would COMMIT our transaction first.
_SCHEMA_V1 = (
    """CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        at REAL NOT NULL,
        requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        estimated INTEGER NOT NULL,
        model TEXT,
        task_id TEXT
    )""",
    # Leads with (provider, account, at) for period lookups. The summed columns ride along so totals
    # are answered from the index alone, without a table lookup per row (about a third faster).
    """CREATE INDEX usage_by_account_time
        ON usage (provider, account, at, requests, input_tokens, output_tokens, cost_usd, estimated)""",
    """CREATE TABLE cooldowns (
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        until REAL NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (provider, account)
    ) WITHOUT ROWID""",
    "CREATE TABLE cursors (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE sticky (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE breakers (
        provider TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL,
        opened_at REAL
    ) WITHOUT ROWID""",
)

# Version 2: leases on a provider's max_concurrency slots. Keyed by provider first, so counting one
# provider's leases reads only its slice.
_SCHEMA_V2 = (
    """CREATE TABLE slots (
        provider TEXT NOT NULL,
        holder TEXT NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (provider, holder)
    ) WITHOUT ROWID""",
)

# What brings a file from the previous version to this one. A fresh file runs them all; a file from an
# older adws runs the ones after its version. Only add entries: a published version never changes.
# Version 3 (issue 11): in-flight reservations (leases carrying tokens), the latest observation of real usage per
# quota subject, and successful runs' totals per specialization for learned needs.
_SCHEMA_V3 = (
    """CREATE TABLE reservations (
        provider TEXT NOT NULL,
        holder TEXT NOT NULL,
        subject TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (provider, holder)
    ) WITHOUT ROWID""",
    """CREATE TABLE observations (
        provider TEXT NOT NULL,
        subject TEXT NOT NULL,
        at REAL NOT NULL,
        percent REAL NOT NULL,
        source TEXT NOT NULL,
        used REAL,
        usage_limit REAL,
        reset_at REAL,
        PRIMARY KEY (provider, subject)
    ) WITHOUT ROWID""",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        specialization TEXT NOT NULL,
        at REAL NOT NULL,
        tokens INTEGER NOT NULL
    )""",
    "CREATE INDEX runs_by_kind_time ON runs (provider, specialization, at, tokens)",
)

# Version 4: the usage epoch behind usage_since, a random token that a roll-up replaces (a cursor of another
# epoch, or of another file, is refused and its reader re-reads the totals).
_SCHEMA_V4 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (key, value) VALUES ('usage_epoch', lower(hex(randomblob(8))))",
)

# Version 5: a change counter per kind of state (CHANGE_KINDS) behind change_counts(), moved by triggers in the
# writing transaction itself, so no write path can forget it. After another process's write, a reader re-reads only
# the kinds whose counter moved (a usage row moves none: usage_since reads those).
_COUNTED = {"cooldowns": "cooldowns", "reservations": "reservations", "observations": "observations",
            "breakers": "breakers", "slots": "slots", "runs": "runs", "cursors": "strategy", "sticky": "strategy"}
_SCHEMA_V5 = (
    "CREATE TABLE changes (kind TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO changes (kind, n) VALUES " + ", ".join(f"('{kind}', 0)" for kind in CHANGE_KINDS),
    *(f"CREATE TRIGGER {table}_{op.lower()}_counted AFTER {op} ON {table}"
      f" BEGIN UPDATE changes SET n = n + 1 WHERE kind = '{kind}'; END"
      for table, kind in _COUNTED.items() for op in ("INSERT", "UPDATE", "DELETE")),
)

_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4, 5: _SCHEMA_V5}
SCHEMA_VERSION = max(_MIGRATIONS)

_INSERT_USAGE = (
    "INSERT INTO usage (provider, account, at, requests, input_tokens, output_tokens, cost_usd,"
    " estimated, model, task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# What a reader polls after another process committed, in one statement (one consistent read, no transaction of its
# own): the usage epoch, the sum of the change counters (they only grow, so an unchanged sum is unchanged counters),
# and the usage rows after a cursor, one row each (a single row of NULLs after the first two when there are none).
_CHANGES_SINCE = (
    "SELECT m.value, (SELECT COALESCE(SUM(n), 0) FROM changes), u.id, u.provider, u.account, u.at, u.requests,"
    " u.input_tokens, u.output_tokens, u.cost_usd, u.estimated, u.model, u.task_id"
    " FROM meta m LEFT JOIN usage u ON u.id > ? WHERE m.key = 'usage_epoch'"
)
_NEW_EPOCH = "UPDATE meta SET value = lower(hex(randomblob(8))) WHERE key = 'usage_epoch'"

# Sums per account, reading only each account's slice of the (provider, account, at) index.
# `accounts` walks the index from one distinct account to the next (a "loose index scan"), so the cost
# is one seek per account plus the rows inside the period, however many years of history the table holds.
_TOTALS = """
WITH RECURSIVE
bounds(provider, since) AS (VALUES {values}),
accounts(provider, since, account) AS (
    SELECT b.provider, b.since, (SELECT MIN(u.account) FROM usage u WHERE u.provider = b.provider)
    FROM bounds b
    UNION ALL
    SELECT a.provider, a.since,
           (SELECT MIN(u.account) FROM usage u WHERE u.provider = a.provider AND u.account > a.account)
    FROM accounts a WHERE a.account IS NOT NULL
)
SELECT a.provider, a.account, TOTAL(u.requests), TOTAL(u.input_tokens), TOTAL(u.output_tokens),
       TOTAL(u.cost_usd), MAX(u.estimated), {bad}
FROM accounts a
JOIN usage u ON u.provider = a.provider AND u.account = a.account AND u.at >= a.since{until}
WHERE a.account IS NOT NULL
GROUP BY a.provider, a.account
"""

# Opening a fresh file from several processes at once can race on the switch to WAL, which needs an
# exclusive lock that the busy handler does not always wait for; retry that step a bounded number of times.
_SETUP_ATTEMPTS = 50
_SETUP_BACKOFF_S = 0.02


def _create_private(path: str) -> None:
    """Make the store's file 0600 (its directory 0700) before SQLite opens it: SQLite creates the file with
    the umask's permissions and gives its -wal and -shm files the same mode. An existing file is checked instead
    (`_check_files`): a symbolic link at the path, planted or not, is refused rather than followed."""
    parent = Path(path).parent
    try:
        from adws.files import make_private_dirs

        make_private_dirs(parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # a file, or a link (O_EXCL fails on any name, even a dangling link): look at it
        _check_files(path)
        return
    except OSError as exc:
        raise StateStoreError(f"cannot create state store {path}: {exc.strerror or exc}") from None
    os.close(fd)
    _check_files(path)  # a -wal or -shm left beside a store that was moved away


# The files SQLite keeps beside the store, and what each is, for messages.
_SIDE_FILES = (("-wal", "write-ahead log"), ("-shm", "shared-memory index"), ("-journal", "rollback journal"))


def _file_problem(info: os.stat_result) -> tuple[str, bool] | None:
    """What makes a file (its lstat `info`) unfit as a part of the store, and whether it may be a real one (a
    regular file of another user: moving it aside may lose what it holds); None when it is fit."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link, which adws does not follow", False
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file", False
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file", False
    if info.st_uid != os.geteuid():
        return f"is owned by another user (uid {info.st_uid})", True
    return None


def _check_files(path: str) -> None:
    """Raise StateStoreError when the store's file, or one SQLite keeps beside it (-wal, -shm, -journal), is a
    symbolic link (adws never follows one: a link planted at the path would have SQLite write wherever it points),
    not a regular file, or owned by another user; a file of the store that others may read or write is made 0600
    (a store an older adws made with the umask's mode). A directory at the store's own path is left to SQLite,
    whose error says so (`_explain`). The message names the file at fault: a bad -wal never calls the store
    itself damaged."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateStoreError(f"state store {path} cannot be looked at: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        found = _file_problem(info)
        if found is not None:
            advice = ("point [state] path / ADWS_STATE_PATH at the file it links to, or remove the link (adws then "
                      "starts a new store)") if stat.S_ISLNK(info.st_mode) else \
                "point [state] path / ADWS_STATE_PATH at a file of your own"
            raise StateStoreError(f"state store {path} {found[0]}: {advice}")
        _make_private(path, info)
    for suffix, what in _SIDE_FILES:
        side = path + suffix
        try:
            info = os.lstat(side)
        except OSError:
            continue
        found = _file_problem(info)
        if found is not None:
            problem, real = found
            caution = " (if it is a real one, it holds the latest commits: stop every adws using the store first)" \
                if real else ""
            raise StateStoreError(f"state store {path}: its {what} {side} {problem}; the store itself is not at "
                                  f"fault: move {side} aside and SQLite makes a new one{caution}")
        _make_private(side, info)


def _make_private(path: str, info: os.stat_result) -> None:
    """Take away group and other permissions from the regular file `path` (its lstat `info`), opened without
    following a link; best effort (a file replaced meanwhile is left alone)."""
    if not info.st_mode & 0o077:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino) and stat.S_ISREG(now.st_mode):
            os.fchmod(fd, stat.S_IMODE(now.st_mode) & 0o700)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- damaged and foreign files ---------------------------------------------------------------------------
#
# A state file can be damaged (a corrupt page, a truncated copy), foreign (another program's database, not a
# database at all, a directory) or from another adws (missing tables, other columns, a newer schema). Every
# such case is one StateStoreError saying what is wrong and what to do, on every command: the schema is
# verified when the file is opened, every SQLite error of every method is translated (`_guarded`), and a
# stored value of the wrong type is reported as damage of its row (`_Row.cell`), never a traceback. Only damage of
# the file itself is met with moving it aside: a row that is wrong is named, with the statement removing just it.

_ADVICE = "move the file aside (adws starts a new one) or point [state] path / ADWS_STATE_PATH at another file"


def _damaged(path: str, what: str) -> StateStoreError:
    # SQLite's message on one line: a damaged schema is quoted with its newlines.
    return StateStoreError(f"state store {path} is damaged or not an adws state store ({one_line(what)}): "
                           f"{_ADVICE}")


# What reading a damaged file can raise: SQLite's errors, and text in the file that is not UTF-8.
_FAILURES = (sqlite3.Error, UnicodeDecodeError)


def _explain(path: str, exc: sqlite3.Error | UnicodeDecodeError) -> StateStoreError:
    """The one-line error for a SQLite failure on `path`."""
    if isinstance(exc, UnicodeDecodeError):
        return _damaged(path, "it holds text that is not UTF-8")
    text = one_line(str(exc))
    if any(part in text for part in ("unable to open", "readonly", "read-only", "disk I/O error")):
        try:  # a -wal or -shm that is a directory or a link makes SQLite say this of the store itself
            _check_files(path)
        except StateStoreError as found:
            return found
    if "disk is full" in text or "disk I/O error" in text:
        return StateStoreError(f"state store {path}: {text}; free space on its disk (nothing was written)")
    if "locked" in text or "busy" in text:
        return StateStoreError(f"state store {path}: {text}")  # held by another process past busy_timeout
    if "readonly" in text or "read-only" in text:
        return StateStoreError(f"state store {path} is read-only for this user: {text}")
    if "unable to open" in text:
        kind = "a directory" if os.path.isdir(path) else "not openable"
        return StateStoreError(f"state store {path} cannot be opened ({kind}: {text}): {_ADVICE}")
    return _damaged(path, text)


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """`method` with every sqlite3.Error it raises turned into the store's one-line StateStoreError."""
    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: object, **kwargs: object) -> T:
        try:
            return method(self, *args, **kwargs)
        except _FAILURES as exc:
            raise _explain(self.path, exc) from None
    return wrapper


def _decoded(path: str, convert: Callable[[], T]) -> T:
    """`convert()` over values summed from many rows (no one row to name); a value of the wrong type or out of range
    is damage of the file, not a bug."""
    try:
        return convert()
    except (ValueError, TypeError, OverflowError) as exc:
        raise _damaged(path, f"a stored value is invalid: {exc}") from None


def _literal(value: object) -> str:
    """A key column's stored value as an SQL literal, for a statement the user runs: text that is short printable
    ASCII in single quotes; any other text as `CAST(X'..' AS TEXT)` of its UTF-8 bytes, so the statement names
    exactly that key once printed, pasted and run (a tab, a newline, runs of spaces, a no-break space, a NUL or an
    escape sequence in a key would otherwise be changed on the way and name another row, or none); a BLOB as X'..'."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"X'{bytes(value).hex()}'"
    if isinstance(value, str):
        if typable(value):
            return "'" + value.replace("'", "''") + "'"
        return f"CAST(X'{value.encode('utf-8', 'surrogatepass').hex()}' AS TEXT)"
    return "NULL" if value is None else repr(value)


# The longest command a damage line shows: a key of 10 KB would make a statement no one can read or paste whole,
# and a statement cut short would run as another one, or fail.
_COMMAND_CHARS = 1000


def _sqlite3_command(path: str, statement: str) -> str | None:
    """The sqlite3 shell command running `statement` on `path`, for a message, or None when it is longer than
    _COMMAND_CHARS (never cut short). The path is one shell word (`shell_word`: its spaces kept, control characters
    escaped), the statement in double quotes where the shell leaves it as it is (its literals keep their single quotes
    readable), else quoted by shlex."""
    quoted = f'"{statement}"' if not any(c in statement for c in '"$`\\!') else shlex.quote(statement)
    command = f"sqlite3 {shell_word(path)} {quoted}"
    return command if len(command) <= _COMMAND_CHARS else None


# What a change counter is set to when it is damaged or missing: microseconds since the epoch when the statement
# runs, above any count a store reaches by counting its writes. Readers compare a counter with the value they last
# saw for equality; a counter set back (to 0) could come back to a value a reader saw and make its stale cache look
# current.
_COUNTER_RESET = "CAST(strftime('%s', 'now') AS INTEGER) * 1000000"
_COUNTER_WHY = "above any value it held, so that no reader's cached state looks current"


class _Row:
    """One stored row being read: its table and the values of its key columns (the primary key; `id` where the
    table has a rowid), so a value of the wrong type or out of range in it (`cell`) is named as damage of that row
    and column, with the one statement that removes just that row (`damaged_entry`, worded as the Redis store words
    a damaged key): the file's other rows are kept."""

    __slots__ = ("_key", "_path", "_table")

    def __init__(self, path: str, table: str, **key: object) -> None:
        self._path, self._table, self._key = path, table, key

    def _where(self) -> str:
        return " AND ".join(f"{column} = {_literal(value)}" for column, value in self._key.items())

    def damage(self, column: str, what: str) -> StateStoreError:
        """The damage line for `column` of this row, which `what` describes. The statement names the row by its key
        (`_literal`); one too long to show (a key of kilobytes) is not shown cut short: the row is named by its key's
        length and first characters, with the query that lists the rows so named."""
        where = self._where()
        if self._table == "changes":  # a change counter is needed by every reader: set anew, not removed
            statement, verb = f"UPDATE changes SET n = {_COUNTER_RESET} WHERE {where}", f"reset it, {_COUNTER_WHY}"
        else:
            statement, verb = f"DELETE FROM {self._table} WHERE {where}", "remove that row"
        command = _sqlite3_command(self._path, statement)
        if command is not None:
            return damaged_entry(self._path, f"table {self._table}, row {where}, column {column}", what, command, verb)
        named = " AND ".join(self._named(c, v) for c, v in self._key.items())
        find = f"SELECT {', '.join(f'hex({c})' for c in self._key)} FROM {self._table} WHERE {named}"
        return damaged_entry(
            self._path, f"table {self._table}, row {named}, column {column}", what,
            f"the statement is too long to show; list the rows so named with {_sqlite3_command(self._path, find)}",
            f"{verb.replace('remove', 'find and remove').replace('reset', 'find and reset')}")

    @staticmethod
    def _named(column: str, value: object) -> str:
        """An SQL condition naming `value` of `column` in a few characters: itself when short, else its length and
        its first 16 bytes (UTF-8)."""
        literal = _literal(value)
        if len(literal) <= 80 or not isinstance(value, str):
            return f"{column} = {literal}"
        # As bytes: SQLite's length() and substr() of text stop at a NUL.
        data = value.encode("utf-8", "surrogatepass")
        return (f"length(CAST({column} AS BLOB)) = {len(data)} AND "
                f"substr(CAST({column} AS BLOB), 1, 16) = X'{data[:16].hex()}'")

    def cell(self, column: str, check: Callable[..., T], value: object, *args: object) -> T:
        """`check(value, *args)` over the stored value of `column`; its ValueError, TypeError or OverflowError (a
        value adws never writes) is this row's damage line."""
        try:
            return check(value, *args)
        except (ValueError, TypeError, OverflowError) as exc:
            raise self.damage(column, f"holds a value this adws cannot read ({one_line(str(exc))})") from None


_expected_columns: dict[str, tuple[str, ...]] | None = None


def expected_columns() -> dict[str, tuple[str, ...]]:
    """Each table's columns, in order, as this adws creates them (read once from a scratch database built
    with the migrations, so the check can never disagree with them). Safe from several threads: the finished
    table is published in one assignment."""
    global _expected_columns
    if _expected_columns is None:
        found: dict[str, tuple[str, ...]] = {}
        scratch = sqlite3.connect(":memory:")
        try:
            for version in sorted(_MIGRATIONS):
                for statement in _MIGRATIONS[version]:
                    scratch.execute(statement)
            for (table,) in scratch.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                found[table] = tuple(r[1] for r in scratch.execute(f"PRAGMA table_info({table})"))
        finally:
            scratch.close()
        _expected_columns = found
    return _expected_columns


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else stored_text(value, name)


def _breaker_state(value: object) -> str:
    """A stored breaker state: one of BREAKER_STATES."""
    state = stored_text(value, "breaker state")
    if state not in BREAKER_STATES:
        raise ValueError(f"breaker state must be one of {', '.join(BREAKER_STATES)}, got {one_line(repr(state), 60)}")
    return state


def _observed_limit(value: object) -> float:
    return stored_amount(value, "observed limit", above_zero=True)


# Each figure of a usage row, with the check a stored value of it passes (after its name).
_FIGURES: tuple[tuple[str, Callable[..., object]], ...] = (
    ("requests", stored_count), ("input_tokens", stored_count), ("output_tokens", stored_count),
    ("cost_usd", stored_amount), ("estimated", stored_flag))


def _usage_record(row: _Row, values: Sequence[object]) -> UsageRecord:
    """The record of a stored usage row (provider, account, at, the five figures, model, task_id), every value
    checked (as `stored_usage`), damage named as `row`'s."""
    figures = [row.cell(name, check, value, name) for (name, check), value in zip(_FIGURES, values[3:8], strict=True)]
    return UsageRecord(row.cell("provider", stored_text, values[0], "provider"),
                       row.cell("account", stored_text, values[1], "account"),
                       row.cell("at", stored_at, values[2], "at"),
                       stored_usage(*figures), row.cell("model", _optional_text, values[8], "model"),
                       row.cell("task_id", _optional_text, values[9], "task_id"))


# Per usage figure: SQL true for a stored value adws never writes (of another type, negative, NaN, which SQLite
# keeps as NULL, or beyond MAX_STORED); {c} is the column.
_BAD_FIGURE = {
    **{name: f"typeof({{c}}) != 'integer' OR {{c}} < 0 OR {{c}} > {MAX_STORED}"
       for name in ("requests", "input_tokens", "output_tokens")},
    "cost_usd": f"typeof({{c}}) NOT IN ('integer', 'real') OR {{c}} < 0 OR {{c}} > {MAX_STORED}",
    "estimated": "typeof({c}) != 'integer' OR {c} NOT IN (0, 1)",
}
# Per (provider, account): 1 when a row of the period holds such a figure, else 0: the sums alone would hide it.
_BAD_ROW = "MAX(" + " OR ".join(f"({bad.format(c='u.' + name)})" for name, bad in _BAD_FIGURE.items()) + ")"
# The first such figure of a row, by name; NULL when the row holds none.
_BAD_COLUMN = "CASE " + " ".join(f"WHEN {bad.format(c=name)} THEN '{name}'" for name, bad in _BAD_FIGURE.items()) + \
    " END"


def _usage_row(record: UsageRecord) -> tuple[object, ...]:
    u = check_usage(record).usage
    return (
        record.provider,
        record.account,
        stored_epoch(record.at, "UsageRecord.at"),
        u.requests,
        u.input_tokens,
        u.output_tokens,
        u.cost_usd,
        int(u.estimated),
        record.model,
        record.task_id,
    )


class SqliteStore(Closing):
    """`StateStore` in one SQLite file.

    `poll_interval_s`: how often (seconds) `version()` asks SQLite whether another connection committed
    (`PRAGMA data_version`, about a microsecond); 0, the default, asks on every call. `monotonic`
    times the interval.
    """

    def __init__(self, path: str | None = None, *, busy_timeout_s: float = 30.0, poll_interval_s: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = os.fspath(path) if path else DEFAULT_PATH  # a Path works too
        if self.path != ":memory:":
            _create_private(self.path)
        # data_version moves when another connection commits; the poller counts our own commits.
        self._lock = threading.RLock()  # one statement or transaction at a time on the shared connection
        self._changes = ChangePoller(self._data_version, poll_interval_s, monotonic)
        self._seen: tuple[int, tuple[int, ...]] | None = None  # the last change counters read, with their sum
        try:
            # isolation_level=None: the sqlite3 module must not open transactions behind our back;
            # every write below says BEGIN IMMEDIATE itself.
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
        except _FAILURES as exc:
            raise _explain(self.path, exc) from None
        try:
            self._setup()
        except _FAILURES as exc:
            self._conn.close()
            raise _explain(self.path, exc) from None
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == _SETUP_ATTEMPTS - 1:
                    raise
                time.sleep(_SETUP_BACKOFF_S * (attempt + 1))
        self._conn.execute("PRAGMA synchronous = NORMAL")
        (found,) = self._conn.execute("PRAGMA user_version").fetchone()
        if found == SCHEMA_VERSION:
            self._verify()
            return  # the usual case: no need to take the write lock just to open
        with self._write() as conn:
            (found,) = conn.execute("PRAGMA user_version").fetchone()
            if found == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise _damaged(self.path, "a database of another program: it has tables but no adws schema "
                                          "version")
            if found < 0:
                raise _damaged(self.path, f"schema version {found}")
            if found > SCHEMA_VERSION:
                raise StateStoreError(
                    f"state store {self.path} has schema version {found}, this adws knows up to "
                    f"{SCHEMA_VERSION}: upgrade adws or point [state] path at another file"
                )
            # Inside BEGIN IMMEDIATE: a concurrent opener waits, then sees all of the schema, and the
            # version re-read above keeps two openers of an old file from upgrading it twice.
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._verify()

    def _verify(self) -> None:
        """Raise StateStoreError unless every table this adws uses is there with its columns (a file from
        another build, or a hand-edited one, fails here and not in the middle of a run)."""
        for table, columns in expected_columns().items():
            found = tuple(r[1] for r in self._conn.execute(f"PRAGMA table_info({table})"))
            if not found:
                raise _damaged(self.path, f"table {table} is missing")
            if found != columns:
                raise _damaged(self.path, f"table {table} has columns {', '.join(found)}; expected "
                                          f"{', '.join(columns)}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. SQLite failures (lock wait exhausted, disk full, read-only file)
        become StateStoreError naming the file; anything else the body raises passes through."""
        conn = self._conn
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except _FAILURES as exc:
                raise _explain(self.path, exc) from None
            self._changes.wrote()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """All rows of one query, under the lock (a read never lands inside another thread's transaction)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @property
    def location(self) -> str:
        return self.path

    @property
    def staleness_s(self) -> float:
        return self._changes.interval_s

    # -- usage ---------------------------------------------------------------------------------

    @_guarded
    def record_usage(self, record: UsageRecord) -> None:
        row = _usage_row(record)
        with self._write() as conn:
            conn.execute(_INSERT_USAGE, row)

    @_guarded
    def import_usage(self, records: Iterable[UsageRecord]) -> int:
        """Insert many records in one transaction (bulk loads, benchmarks); returns how many."""
        rows = [_usage_row(r) for r in records]
        with self._write() as conn:
            conn.executemany(_INSERT_USAGE, rows)
        return len(rows)

    @_guarded
    def usage_records(self) -> Iterator[UsageRecord]:
        rows = self._read(
            "SELECT id, provider, account, at, requests, input_tokens, output_tokens, cost_usd, estimated, model,"
            " task_id FROM usage ORDER BY at, id"
        )
        records = [_usage_record(_Row(self.path, "usage", id=row[0]), row[1:]) for row in rows]
        return iter(records)  # read in full here, so a damaged row is reported by this call

    @_guarded
    def roll_up(self, before: datetime) -> int:
        cutoff = hour_start(to_epoch(before, "before"))
        bucket = f"CAST(at / {ROLLUP_SECONDS} AS INTEGER) * {ROLLUP_SECONDS}"  # at >= 0: truncation = floor
        with self._write() as conn:
            conn.execute("DROP TABLE IF EXISTS temp.rolled")
            # Only hours holding more than one row: a lone row is already as small as its hour gets.
            conn.execute(
                # CAST(TOTAL()): SUM would fail past 2**63 ("integer overflow"); the cast stops there, a row
                # every store still reads (base.MAX_STORED).
                f"CREATE TEMP TABLE rolled AS SELECT provider, account, {bucket} AS hour,"
                " CAST(TOTAL(requests) AS INTEGER) AS r, CAST(TOTAL(input_tokens) AS INTEGER) AS i,"
                " CAST(TOTAL(output_tokens) AS INTEGER) AS o, SUM(cost_usd) AS c, MAX(estimated) AS e,"
                f" COUNT(*) AS n FROM usage WHERE at < ? GROUP BY provider, account, hour HAVING n > 1",
                (cutoff,),
            )
            conn.execute(
                f"DELETE FROM usage WHERE at < ? AND (provider, account, {bucket}) IN"
                " (SELECT provider, account, hour FROM temp.rolled)",
                (cutoff,),
            )
            conn.execute(
                "INSERT INTO usage (provider, account, at, requests, input_tokens, output_tokens, cost_usd,"
                " estimated) SELECT provider, account, hour, r, i, o, c, e FROM temp.rolled"
            )
            (removed,) = conn.execute("SELECT COALESCE(SUM(n - 1), 0) FROM temp.rolled").fetchone()
            conn.execute("DROP TABLE temp.rolled")
            if removed:
                conn.execute(_NEW_EPOCH)
        return int(removed)

    @_guarded
    def usage_totals(
        self, since: Mapping[str, datetime], until: datetime | None = None
    ) -> dict[tuple[str, str], Usage]:
        if not since:
            return {}
        params: list[object] = []
        for provider, start in since.items():
            params += [provider, to_epoch(start, f"since[{provider!r}]")]
        until_sql = ""
        if until is not None:
            until_sql = " AND u.at < ?"
            params.append(to_epoch(until, "until"))
        sql = _TOTALS.format(values=", ".join(["(?, ?)"] * len(since)), until=until_sql, bad=_BAD_ROW)
        rows = self._read(sql, params)
        for row in rows:
            if row[7]:
                self._name_bad_usage(row[0], row[1], since[row[0]], until)
        # Sums of rows checked above ({bad}): never damage however large (base.MAX_STORED). TOTAL, not SUM: SUM
        # fails past 2**63 ("integer overflow"); TOTAL sums in a double, as Redis does.
        return _decoded(self.path, lambda: {(row[0], row[1]): stored_usage(*row[2:7], high=math.inf) for row in rows})

    def _name_bad_usage(self, provider: str, account: str, since: datetime, until: datetime | None) -> None:
        """Raise the damage line of the first usage row of `provider`/`account` in since..until that holds a figure
        adws never writes (`_BAD_FIGURE`), naming its id and column. One indexed read, only once totals found one."""
        found = self._read(
            f"SELECT id, {_BAD_COLUMN}, requests, input_tokens, output_tokens, cost_usd, estimated FROM usage"
            f" WHERE provider = ? AND account = ? AND at >= ?{'' if until is None else ' AND at < ?'}"
            f" AND {_BAD_COLUMN} IS NOT NULL ORDER BY id LIMIT 1",
            (provider, account, to_epoch(since, "since"), *(() if until is None else (to_epoch(until, "until"),))))
        if not found:  # written meanwhile? the totals' own verdict stands, without a row to name
            raise _damaged(self.path, f"a usage row of {one_line(str(provider), 60)}/{one_line(str(account), 60)} "
                                      "holds a figure adws never writes (negative, not a number, or too large)")
        id_, column, *figures = found[0]
        row = _Row(self.path, "usage", id=id_)
        for (name, check), value in zip(_FIGURES, figures, strict=True):
            if name == column:
                row.cell(column, check, value, name)
        # Python takes what SQL does not (a real with no fraction where a count goes): SQL's verdict stands.
        raise row.damage(column, "holds a figure adws never writes (of another type, negative, or too large)")

    @_guarded
    def usage_cursor(self) -> UsageCursor:
        """(epoch, highest row id) in one statement, so a roll-up committed in between cannot pair an old epoch
        with rewritten rows."""
        ((epoch, last),) = self._read(
            "SELECT (SELECT value FROM meta WHERE key = 'usage_epoch'), (SELECT COALESCE(MAX(id), 0) FROM usage)")
        if epoch is None:
            raise _damaged(self.path, "the usage epoch is missing")
        return (str(epoch), int(last))

    @_guarded
    def usage_since(self, cursor: UsageCursor) -> UsageChanges | None:
        """Rows by id: ids only grow between roll-ups (a new row's id is above every stored one, and only a
        roll-up, which starts a new epoch, deletes rows). The change counters come with them
        (`UsageChanges.counts`): their sum is read in the same statement, and only when it moved are they read."""
        epoch, after = cursor
        rows = self._read(_CHANGES_SINCE, (after,))
        if not rows:
            raise _damaged(self.path, "the usage epoch is missing")
        if rows[0][0] != epoch:
            return None
        total = rows[0][1]
        counts = self._seen[1] if self._seen is not None and self._seen[0] == total else self.change_counts()
        new = [row[2:] for row in rows if row[2] is not None]
        if len(new) > 1:
            new.sort(key=_ID)  # append order (the join yields the rows by id, but SQL promises no order)
        records = [_usage_record(_Row(self.path, "usage", id=r[0]), r[1:]) for r in new]
        return UsageChanges((epoch, int(new[-1][0]) if new else after), records, counts)

    @_guarded
    def oldest_usage(self, provider: str, account: str, since: datetime) -> datetime | None:
        # ORDER BY ... LIMIT 1 rather than MIN(at): as cheap on the index, and it names the row of a bad time.
        found = self._read(
            "SELECT id, at FROM usage WHERE provider = ? AND account = ? AND at >= ? ORDER BY at LIMIT 1",
            (provider, account, to_epoch(since, "since")),
        )
        return _Row(self.path, "usage", id=found[0][0]).cell("at", stored_at, found[0][1], "at") if found else None

    # -- cooldowns -----------------------------------------------------------------------------

    @_guarded
    def set_cooldown(self, provider: str, account: str, cooldown: Cooldown) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO cooldowns (provider, account, until, reason) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider, account) DO UPDATE SET until = excluded.until,"
                " reason = excluded.reason",
                (provider, account, stored_epoch(cooldown.until, "Cooldown.until"), cooldown.reason),
            )

    @_guarded
    def clear_cooldown(self, provider: str, account: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM cooldowns WHERE provider = ? AND account = ?", (provider, account))

    @_guarded
    def cooldowns(self, now: datetime) -> dict[tuple[str, str], Cooldown]:
        rows = self._read(
            "SELECT provider, account, until, reason FROM cooldowns WHERE until > ?",
            (to_epoch(now, "now"),),
        )
        out = {}
        for p, a, u, r in rows:
            row = _Row(self.path, "cooldowns", provider=p, account=a)
            out[(row.cell("provider", stored_text, p, "provider"), row.cell("account", stored_text, a, "account"))] = \
                Cooldown(until=row.cell("until", stored_at, u, "until"),
                         reason=row.cell("reason", stored_text, r, "reason"))
        return out

    # -- cursors and sticky choices ------------------------------------------------------------

    @_guarded
    def next_cursor(self, key: str) -> int:
        with self._write() as conn:
            (after,) = conn.execute(
                "INSERT INTO cursors (key, value) VALUES (?, 1)"
                " ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                (key,),
            ).fetchone()
            # Checked inside the transaction: a damaged cursor is reported and left as it was (rolled back).
            checked = _Row(self.path, "cursors", key=key).cell("value", stored_count, after, f"cursor {key!r}",
                                                                MAX_COUNT + 1)
        return checked - 1

    @_guarded
    def advance_cursor(self, key: str, value: int) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO cursors (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                (key, value),
            )

    @_guarded
    def peek_cursor(self, key: str) -> int:
        rows = self._read("SELECT value FROM cursors WHERE key = ?", (key,))
        return _Row(self.path, "cursors", key=key).cell("value", stored_count, rows[0][0], f"cursor {key!r}",
                                                          MAX_COUNT) if rows else 0

    @_guarded
    def cursors(self) -> dict[str, int]:
        rows = self._read("SELECT key, value FROM cursors")
        return {_Row(self.path, "cursors", key=key).cell("key", stored_text, key, "cursor key"):
                _Row(self.path, "cursors", key=key).cell("value", stored_count, value, f"cursor {key!r}", MAX_COUNT)
                for key, value in rows}

    @_guarded
    def sticky_choices(self) -> dict[str, str]:
        rows = self._read("SELECT key, value FROM sticky")
        return {_Row(self.path, "sticky", key=key).cell("key", stored_text, key, "sticky key"):
                _Row(self.path, "sticky", key=key).cell("value", stored_text, value, f"sticky {key!r}")
                for key, value in rows}

    @_guarded
    def get_sticky(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM sticky WHERE key = ?", (key,))
        return _Row(self.path, "sticky", key=key).cell("value", stored_text, rows[0][0], f"sticky {key!r}") \
            if rows else None

    @_guarded
    def set_sticky(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sticky (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- circuit breakers ----------------------------------------------------------------------

    def _breaker(self, provider: object, state: object, failures: object, opened_at: object) -> BreakerState:
        row = _Row(self.path, "breakers", provider=provider)
        return BreakerState(
            state=row.cell("state", _breaker_state, state),
            failures=row.cell("failures", stored_count, failures, "breaker failures", MAX_COUNT),
            opened_at=None if opened_at is None else row.cell("opened_at", stored_at, opened_at, "breaker opened_at"))

    @_guarded
    def get_breaker(self, provider: str) -> BreakerState:
        rows = self._read("SELECT state, failures, opened_at FROM breakers WHERE provider = ?", (provider,))
        return self._breaker(provider, *rows[0]) if rows else BreakerState()

    @_guarded
    def update_breaker(self, provider: str, fn: Callable[[BreakerState], BreakerState]) -> BreakerState:
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, failures, opened_at FROM breakers WHERE provider = ?", (provider,)
            ).fetchone()
            new = fn(BreakerState() if row is None else self._breaker(provider, *row))
            opened_at = None if new.opened_at is None else stored_epoch(new.opened_at, "BreakerState.opened_at")
            conn.execute(
                "INSERT INTO breakers (provider, state, failures, opened_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider) DO UPDATE SET state = excluded.state,"
                " failures = excluded.failures, opened_at = excluded.opened_at",
                (provider, new.state, new.failures, opened_at),
            )
        return new

    @_guarded
    def breakers(self) -> dict[str, BreakerState]:
        rows = self._read("SELECT provider, state, failures, opened_at FROM breakers")
        return {_Row(self.path, "breakers", provider=p).cell("provider", stored_text, p, "breaker provider"):
                self._breaker(p, s, f, o) for p, s, f, o in rows}

    # -- concurrency slots -----------------------------------------------------------------------

    @_guarded
    def acquire_slot(self, provider: str, holder: str, limit: int, now: datetime, until: datetime) -> bool:
        start, end = check_lease(limit, now, until)
        with self._write() as conn:
            # Count and insert under the write lock: two processes cannot both see the last free slot.
            conn.execute("DELETE FROM slots WHERE provider = ? AND until <= ?", (provider, start))
            (held,) = conn.execute(
                "SELECT COUNT(*) FROM slots WHERE provider = ? AND holder != ?", (provider, holder)
            ).fetchone()
            taken = bool(held < limit)
            if taken:
                conn.execute(
                    "INSERT INTO slots (provider, holder, until) VALUES (?, ?, ?)"
                    " ON CONFLICT (provider, holder) DO UPDATE SET until = excluded.until",
                    (provider, holder, end),
                )
        return taken

    @_guarded
    def release_slot(self, provider: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM slots WHERE provider = ? AND holder = ?", (provider, holder))

    @_guarded
    def active_slots(self, now: datetime) -> dict[str, tuple[datetime, ...]]:
        start = to_epoch(now, "now")
        rows = self._read("SELECT provider, holder, until FROM slots WHERE until > ? ORDER BY provider, until",
                          (start,))
        live: dict[str, list[datetime]] = {}
        for provider, holder, until in rows:
            end = _Row(self.path, "slots", provider=provider, holder=holder).cell(
                "until", stored_lease_end, until, "a lease's end", start)
            live.setdefault(provider, []).append(end)
        return {provider: tuple(ends) for provider, ends in live.items()}

    # -- reservations, observations, learned runs ---------------------------------------------------

    def reserve(self, provider: str, subject: str, holder: str, tokens: int, now: datetime,
                until: datetime) -> dict[str, int]:
        start, end = check_reservation(tokens, now, until)
        with self._write() as conn:
            # Read and insert under the write lock: of two coordinators reserving at once, the second sees the first.
            conn.execute("DELETE FROM reservations WHERE provider = ? AND until <= ?", (provider, start))
            # Each row read and checked (not SUM in SQL): a damaged one is named, and rolls the reservation back.
            before: dict[str, int] = {}
            for other, subj, held in conn.execute(
                "SELECT holder, subject, tokens FROM reservations WHERE provider = ? AND holder != ? ORDER BY subject",
                (provider, holder),
            ).fetchall():
                row = _Row(self.path, "reservations", provider=provider, holder=other)
                name = row.cell("subject", stored_text, subj, "subject")
                before[name] = before.get(name, 0) + row.cell("tokens", stored_count, held, "reserved tokens",
                                                              MAX_COUNT)
            conn.execute(
                "INSERT INTO reservations (provider, holder, subject, tokens, until) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, holder) DO UPDATE SET subject = excluded.subject,"
                " tokens = excluded.tokens, until = excluded.until",
                (provider, holder, subject, tokens, end),
            )
        return before

    def release_reservation(self, provider: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM reservations WHERE provider = ? AND holder = ?", (provider, holder))

    @_guarded
    def reservations(self, now: datetime) -> dict[tuple[str, str], tuple[tuple[int, datetime], ...]]:
        start = to_epoch(now, "now")
        rows = self._read(
            "SELECT provider, holder, subject, tokens, until FROM reservations WHERE until > ?"
            " ORDER BY provider, subject, until", (start,),
        )
        out: dict[tuple[str, str], list[tuple[int, datetime]]] = {}
        for provider, holder, subject, tokens, until in rows:
            row = _Row(self.path, "reservations", provider=provider, holder=holder)
            out.setdefault((provider, subject), []).append(
                (row.cell("tokens", stored_count, tokens, "reserved tokens", MAX_COUNT),
                 row.cell("until", stored_lease_end, until, "a reservation's end", start)))
        return {key: tuple(leases) for key, leases in out.items()}

    def record_observation(self, observation: Observation) -> bool:
        o = observation
        with self._write() as conn:
            written = conn.execute(
                "INSERT INTO observations (provider, subject, at, percent, source, used, usage_limit, reset_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, subject) DO UPDATE SET"
                " at = excluded.at, percent = excluded.percent, source = excluded.source, used = excluded.used,"
                " usage_limit = excluded.usage_limit, reset_at = excluded.reset_at WHERE excluded.at >= at",
                (o.provider, o.subject, stored_epoch(o.at, "Observation.at"), o.percent, o.source, o.used, o.limit,
                 stored_epoch(o.reset_at, "Observation.reset_at") if o.reset_at else None),
            ).rowcount
        return written > 0  # 0: the upsert's WHERE kept the later reading

    @_guarded
    def observations(self) -> dict[tuple[str, str], Observation]:
        rows = self._read(
            "SELECT provider, subject, at, percent, source, used, usage_limit, reset_at FROM observations")
        out = {}
        for p, subj, at, pct, src, used, limit, reset in rows:
            row = _Row(self.path, "observations", provider=p, subject=subj)
            out[(p, subj)] = Observation(
                row.cell("provider", stored_text, p, "provider"), row.cell("subject", stored_text, subj, "subject"),
                row.cell("at", stored_at, at, "observed at"),
                row.cell("percent", stored_amount, pct, "observed percent"),
                row.cell("source", stored_text, src, "observation source"),
                None if used is None else row.cell("used", stored_amount, used, "observed use"),
                None if limit is None else row.cell("usage_limit", _observed_limit, limit),
                None if reset is None else row.cell("reset_at", stored_at, reset, "observed reset"))
        return out

    def record_run(self, provider: str, specialization: str, at: datetime, tokens: int) -> None:
        self.import_runs([RunRecord(provider, specialization, at, tokens)])

    @_guarded
    def recent_runs(self, provider: str, specialization: str, limit: int) -> list[int]:
        rows = self._read(
            "SELECT id, tokens FROM runs WHERE provider = ? AND specialization = ? ORDER BY at DESC, id DESC LIMIT ?",
            (provider, specialization, limit),
        )
        return [_Row(self.path, "runs", id=id_).cell("tokens", stored_count, tokens, "a run's tokens", MAX_COUNT)
                for id_, tokens in rows]

    @_guarded
    def recorded_runs(self) -> Iterator[RunRecord]:
        rows = self._read(
            "SELECT id, provider, specialization, at, tokens FROM runs ORDER BY provider, specialization, at, id")
        runs = []
        for id_, provider, specialization, at, tokens in rows:
            row = _Row(self.path, "runs", id=id_)
            runs.append(RunRecord(row.cell("provider", stored_text, provider, "provider"),
                                  row.cell("specialization", stored_text, specialization, "specialization"),
                                  row.cell("at", stored_at, at, "a run's time"),
                                  row.cell("tokens", stored_count, tokens, "a run's tokens", MAX_COUNT)))
        return iter(runs)  # read in full here, so a damaged row is reported by this call

    def import_runs(self, runs: Iterable[RunRecord]) -> RunsImported:
        """Insert the runs in one transaction, then keep the newest `base.RUNS_KEPT` of each group they touch (by
        time; at one instant the one recorded last is the newer), as every backend does: the file stays bounded,
        and a median is over the same runs as on Redis. A group's trim reads at most RUNS_KEPT + its new rows of
        the (provider, specialization, at) index."""
        rows = [(r.provider, r.specialization, stored_epoch(r.at, "at"), r.tokens) for r in runs]
        cap = base.RUNS_KEPT  # read at call time: tests lower it
        kept, displaced = len(rows), 0
        with self._write() as conn:
            # A new row's id is above every id there before (rowids grow past the largest in the table), so the
            # rows a trim drops are told apart by id: the file's own, or the store's.
            ((last,),) = conn.execute("SELECT coalesce(max(id), 0) FROM runs").fetchall()
            conn.executemany("INSERT INTO runs (provider, specialization, at, tokens) VALUES (?, ?, ?, ?)", rows)
            for provider, specialization in dict.fromkeys((p, s) for p, s, _, _ in rows):
                # Counted first (the index alone): below the cap, the usual case, nothing is sorted.
                ((held,),) = conn.execute("SELECT count(*) FROM runs WHERE provider = ? AND specialization = ?",
                                          (provider, specialization)).fetchall()
                if held > cap:
                    dropped = [id_ for (id_,) in conn.execute(
                        "SELECT id FROM runs WHERE provider = ? AND specialization = ? ORDER BY at, id LIMIT ?",
                        (provider, specialization, held - cap))]
                    conn.executemany("DELETE FROM runs WHERE id = ?", [(id_,) for id_ in dropped])
                    displaced += sum(id_ <= last for id_ in dropped)
                    kept -= sum(id_ > last for id_ in dropped)
        return RunsImported(kept, displaced)

    # -- change detection ----------------------------------------------------------------------

    def _data_version(self) -> int:
        try:
            ((data_version,),) = self._read("PRAGMA data_version")
        except _FAILURES as exc:
            raise _explain(self.path, exc) from None
        return int(data_version)

    @_guarded
    def change_counts(self) -> tuple[int, ...]:
        found = dict(self._read("SELECT kind, n FROM changes"))
        missing = [kind for kind in CHANGE_KINDS if kind not in found]
        if missing:
            kind = _literal(missing[0])
            command = _sqlite3_command(self.path, f"INSERT INTO changes (kind, n) VALUES ({kind}, {_COUNTER_RESET})")
            raise damaged_entry(self.path, f"table changes, row kind = {kind}", "is missing",
                                command or "the statement is too long to show", f"add it, {_COUNTER_WHY}")
        counts = tuple(_Row(self.path, "changes", kind=kind).cell("n", stored_count, found[kind],
                                                                  f"change counter {kind}") for kind in CHANGE_KINDS)
        self._seen = (sum(counts), counts)
        return counts

    @_guarded
    def version(self) -> int:
        return self._changes.version()

    def close(self) -> None:
        self._conn.close()
