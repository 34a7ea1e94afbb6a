"""The networked state store: one Redis server shared by the coordinators of every host in a fleet.

Why it is safe for many processes on many machines at once:
- every update that touches more than one key (a usage row and the account index, a lease and its
  expiry, any write and the change counter) is one Lua script, which Redis runs atomically;
- the circuit breaker's read-modify-write is a compare-and-set script retried on conflict, so two hosts
  failing the same provider at once both count;
- a cooldown is a key that expires exactly when the cooldown ends, a provider's leases are a sorted set
  (holder -> end) whose key expires when its last lease ends: state of a host that died goes away on its own.
  Readers still compare the ends with their own `now`, so a clock (tests, replays) is never second-guessed;
- usage rows carry a random id, so a write retried after a dropped connection is stored once.

Keys (prefix "adws:" by default, `key_prefix` so several fleets share one server); names are
percent-quoted so no provider or account name can forge another key:
  {p}v                       hash  gen (random per server life), n (change counter), lepoch (usage log
                                   epoch, replaced by a roll-up), lbase (log entries trimmed from its head)
  {p}log                     list  "{prov} {acct} at member" per usage row in append order, the newest
                                   LOG_CAP kept: what usage_since reads
  {p}providers               set   providers with usage
  {p}accounts:{prov}         set   accounts of a provider with usage
  {p}usage:{prov}:{acct}     zset  "requests input output cost estimated id [model, task]" by time
  {p}cooldowns               set   {prov}:{acct} of cooldowns that may still run
  {p}cooldown:{prov}:{acct}  str   JSON [provider, account, until, reason], expires at `until`
  {p}cursors, {p}sticky      hash  round-robin cursors, sticky assignments
  {p}breakers                hash  provider -> JSON [state, failures, opened_at]
  {p}slotted                 set   providers that may hold leases
  {p}slots:{prov}            zset  holder by lease end, expires at the last lease's end
  {p}runs:{prov}:{spec}      zset  "tokens id" per successful run by time, the newest RUNS_KEPT kept (listed for
                                   export by SCAN over this shape: no index of them is kept)

Scripts reach keys named from the prefix rather than declared up front, which standalone Redis (and
Sentinel) allows; Redis Cluster does not, and is not supported.

Freshness: `version()` answers from memory and reads the change counter at most once per
`poll_interval_s` (default 5 ms), so routing makes no round trip per decision; another host's write is seen
by this host's routing at most that late (plus one network round trip). This store's own writes at once.

Connection: `url` is redis-py's URL (redis://[[user]:password@]host:port/db, rediss:// for TLS, unix://);
query arguments such as ?socket_connect_timeout=1 override the defaults below, and redis-py passes the others
on (?ssl_ca_certs=/path/ca.pem for a private CA, ssl_certfile/ssl_keyfile for client certificates). Any failure
to reach the server is a StateStoreError naming the URL (password removed): never a silent fall-back to a
private store.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote, unquote, urlsplit

from adws.attempt import Usage
from adws.redact import REDACTED
from adws.state import base
from adws.state.base import (
    DEFAULT_PREFIX,
    FUTURE_TOLERANCE,
    MAX_COUNT,
    MAX_STORED,
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
    from_epoch,
    hour_start,
    one_line,
    printable,
    shell_word,
    stored_amount,
    stored_at,
    stored_count,
    stored_epoch,
    stored_lease_end,
    stored_text,
    stored_usage,
    to_epoch,
    typable,
)

_T = TypeVar("_T")

CONNECT_TIMEOUT_S = 2.0  # declared bound on reaching the server; ?socket_connect_timeout= overrides
SOCKET_TIMEOUT_S = 5.0  # bound on one command's answer; ?socket_timeout= overrides
POLL_INTERVAL_S = 0.005  # staleness bound of version() for writes by other hosts
CAS_ATTEMPTS = 1000  # compare-and-set retries of one breaker update before giving up
IMPORT_BATCH = 500  # rows per pipeline when importing usage
# Usage log entries kept for usage_since (about 100 bytes each): a reader more than this many rows behind
# gets None and re-reads the totals, which is correct, only slower.
LOG_CAP = 10_000

# Shared head of the write scripts: ARGV[1] is the key prefix, ARGV[2] a random token fresh for each call,
# kept as the counter's `gen` by the first write that finds none (a new server, or one restarted without
# persistence): a counter that starts over can never look unchanged to a reader, even to the same writer.
_HEAD = """
local P = ARGV[1]
local function bump()
  redis.call('HSETNX', P .. 'v', 'gen', ARGV[2])
  return redis.call('HINCRBY', P .. 'v', 'n', 1)
end
"""

_RECORD = _HEAD + """
-- ARGV: 3 quoted provider, 4 quoted account, 5 at, 6 member
redis.call('ZADD', P .. 'usage:' .. ARGV[3] .. ':' .. ARGV[4], ARGV[5], ARGV[6])
redis.call('SADD', P .. 'accounts:' .. ARGV[3], ARGV[4])
redis.call('SADD', P .. 'providers', ARGV[3])
local size = redis.call('RPUSH', P .. 'log', ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
if size > tonumber(ARGV[7]) then
  redis.call('LPOP', P .. 'log')
  redis.call('HINCRBY', P .. 'v', 'lbase', 1)
end
return bump()
"""

_USAGE_SINCE = """
-- ARGV: 1 prefix, 2 cursor epoch, 3 cursor position (-1: only the current cursor).
-- Returns {epoch, position after the last entry, entries after the cursor} or {epoch, -1} for a stale cursor.
local P = ARGV[1]
local v = redis.call('HMGET', P .. 'v', 'gen', 'lepoch', 'lbase')
local epoch = (v[1] or '') .. '/' .. (v[2] or '')
local base = tonumber(v[3] or '0')
local last = base + redis.call('LLEN', P .. 'log')
local pos = tonumber(ARGV[3])
if pos < 0 then return {epoch, last, {}} end
if epoch ~= ARGV[2] or pos < base or pos > last then return {epoch, -1, {}} end
return {epoch, last, redis.call('LRANGE', P .. 'log', pos - base, -1)}
"""

_TOTALS = """
-- ARGV: 1 prefix, 2 upper bound ('+inf' or '(until'), 3 the largest figure a row may hold, then pairs: quoted
-- provider, since. Returns per account: index of its provider pair, quoted account, requests, input, output, cost,
-- estimated; or only {'bad', quoted provider, quoted account, member} for a row adws never writes.
local P, upper, out = ARGV[1], ARGV[2], {}
for i = 4, #ARGV, 2 do
  local qp, since = ARGV[i], ARGV[i + 1]
  for _, qa in ipairs(redis.call('SMEMBERS', P .. 'accounts:' .. qp)) do
    local rows = redis.call('ZRANGE', P .. 'usage:' .. qp .. ':' .. qa, since, upper, 'BYSCORE')
    if #rows > 0 then
      local r, inp, outp, cost, est = 0, 0, 0, 0, 0
      for _, row in ipairs(rows) do
        -- The numbers lead the member, space-separated: matched in place, about twice as fast as cjson.
        local a, b, c, d, e = string.match(row, '^(%S+) (%S+) (%S+) (%S+) (%S+)')
        a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
        -- A row adws never writes (a figure that is no number, NaN, negative or too large): named, not summed.
        for _, n in ipairs({a or -1, b or -1, c or -1, d or -1}) do
          if not (n >= 0 and n <= tonumber(ARGV[3])) then return {{'bad', qp, qa, row}} end
        end
        r, inp, outp, cost = r + a, inp + b, outp + c, cost + d
        if e == '1' then est = 1 end
      end
      -- %.17g: Lua numbers become integers (truncated) in replies; strings keep every digit.
      out[#out + 1] = {i, qa, string.format('%.17g', r), string.format('%.17g', inp),
                       string.format('%.17g', outp), string.format('%.17g', cost), est}
    end
  end
end
return out
"""

_SET_COOLDOWN = _HEAD + """
-- ARGV: 3 member ({prov}:{acct}), 4 value, 5 expiry (server epoch ms; '' = already over)
local key = P .. 'cooldown:' .. ARGV[3]
if ARGV[5] ~= '' then
  redis.call('SET', key, ARGV[4], 'PXAT', ARGV[5])
  redis.call('SADD', P .. 'cooldowns', ARGV[3])
else
  redis.call('DEL', key)
  redis.call('SREM', P .. 'cooldowns', ARGV[3])
end
return bump()
"""

_CLEAR_COOLDOWN = _HEAD + """
local gone = redis.call('DEL', P .. 'cooldown:' .. ARGV[3])
redis.call('SREM', P .. 'cooldowns', ARGV[3])
if gone > 0 then bump() end
return gone
"""

_COOLDOWNS = """
-- ARGV: 1 prefix. {member, value} of the cooldowns still stored; index entries whose key expired are dropped.
local P, out = ARGV[1], {}
for _, member in ipairs(redis.call('SMEMBERS', P .. 'cooldowns')) do
  local value = redis.call('GET', P .. 'cooldown:' .. member)
  if value then out[#out + 1] = {member, value} else redis.call('SREM', P .. 'cooldowns', member) end
end
return out
"""

_NEXT_CURSOR = _HEAD + """
local after = redis.call('HINCRBY', P .. 'cursors', ARGV[3], 1)
bump()
return after
"""

_ADVANCE_CURSOR = _HEAD + """
local current = tonumber(redis.call('HGET', P .. 'cursors', ARGV[3]) or '0')
if tonumber(ARGV[4]) > current then
  redis.call('HSET', P .. 'cursors', ARGV[3], ARGV[4])
  bump()
end
return 0
"""

_SET_STICKY = _HEAD + """
redis.call('HSET', P .. 'sticky', ARGV[3], ARGV[4])
return bump()
"""

_CAS_BREAKER = _HEAD + """
-- ARGV: 3 provider, 4 expected value ('' = none stored), 5 new value. 1 = written, 0 = someone was first.
local current = redis.call('HGET', P .. 'breakers', ARGV[3]) or ''
if current ~= ARGV[4] then return 0 end
redis.call('HSET', P .. 'breakers', ARGV[3], ARGV[5])
bump()
return 1
"""

_ACQUIRE = _HEAD + """
-- ARGV: 3 quoted provider, 4 holder, 5 limit, 6 now, 7 lease end, 8 clock skew (s). 1 = leased, 0 = full.
local key = P .. 'slots:' .. ARGV[3]
local ended = redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[6])
local held = redis.call('ZCARD', key)
if redis.call('ZSCORE', key, ARGV[4]) then held = held - 1 end
local taken = held < tonumber(ARGV[5])
if taken then
  redis.call('ZADD', key, ARGV[7], ARGV[4])
  redis.call('SADD', P .. 'slotted', ARGV[3])
end
if taken or ended > 0 then
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    -- The key lives exactly as long as its last lease: a fleet that died leaves nothing behind.
    redis.call('PEXPIREAT', key, math.ceil((tonumber(last[2]) - tonumber(ARGV[8])) * 1000))
  end
  bump()
end
if taken then return 1 end
return 0
"""

_RELEASE = _HEAD + """
local gone = redis.call('ZREM', P .. 'slots:' .. ARGV[3], ARGV[4])
if gone > 0 then bump() end
return gone
"""

_ACTIVE_SLOTS = """
-- ARGV: 1 prefix, 2 now. Per provider: quoted name, then lease ends after now, soonest first.
local P, out = ARGV[1], {}
for _, qp in ipairs(redis.call('SMEMBERS', P .. 'slotted')) do
  local key = P .. 'slots:' .. qp
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', P .. 'slotted', qp)
  else
    local ends = redis.call('ZRANGE', key, '(' .. ARGV[2], '+inf', 'BYSCORE', 'WITHSCORES')
    if #ends > 0 then
      local row = {qp}
      for j = 2, #ends, 2 do row[#row + 1] = ends[j] end
      out[#out + 1] = row
    end
  end
end
return out
"""

_ROLL_UP = _HEAD + """
-- ARGV: 3 quoted provider, 4 quoted account, 5 cutoff (hour start), 6 rollup seconds, 7 id stem.
-- Rows before the cutoff become one row per hour holding more than one; returns how many went away.
local key = P .. 'usage:' .. ARGV[3] .. ':' .. ARGV[4]
local size = tonumber(ARGV[6])
local rows = redis.call('ZRANGE', key, '-inf', '(' .. ARGV[5], 'BYSCORE', 'WITHSCORES')
local buckets, order = {}, {}
for j = 1, #rows, 2 do
  local hour = math.floor(tonumber(rows[j + 1]) / size) * size
  local b = buckets[hour]
  if not b then
    b = {n = 0, members = {}, r = 0, i = 0, o = 0, c = 0, e = 0}
    buckets[hour] = b
    order[#order + 1] = hour
  end
  local r, i, o, c, e = string.match(rows[j], '^(%S+) (%S+) (%S+) (%S+) (%S+)')
  b.n = b.n + 1
  b.members[#b.members + 1] = rows[j]
  b.r, b.i, b.o, b.c = b.r + r, b.i + i, b.o + o, b.c + c
  if e == '1' then b.e = 1 end
end
local removed = 0
for _, hour in ipairs(order) do
  local b = buckets[hour]
  if b.n > 1 then
    for _, m in ipairs(b.members) do redis.call('ZREM', key, m) end
    -- %.17g: every digit of the sums (Lua's tostring keeps 14).
    local row = string.format('%.17g %.17g %.17g %.17g %d %s:%d [null,null]', b.r, b.i, b.o, b.c, b.e, ARGV[7],
                              hour)
    redis.call('ZADD', key, hour, row)
    removed = removed + b.n - 1
  end
end
if removed > 0 then
  -- Rows were rewritten: cursors into the log no longer add up to the totals.
  redis.call('HSET', P .. 'v', 'lepoch', ARGV[2], 'lbase', 0)
  redis.call('DEL', P .. 'log')
  bump()
end
return removed
"""


# Issue 11. Reservations: one hash per provider, holder -> {"s": subject, "t": tokens, "e": end}; the key lives as
# long as its last reservation, like the slots' sorted sets.
_RESERVE = _HEAD + """
-- ARGV: 3 quoted provider, 4 holder, 5 subject, 6 tokens, 7 now, 8 end, 9 clock skew (s).
-- Returns the other live reservations per subject as they stood before this one: {subject, tokens, ...}.
local key = P .. 'res:' .. ARGV[3]
local now = tonumber(ARGV[7])
local before, order = {}, {}
local last = tonumber(ARGV[8])
local rows = redis.call('HGETALL', key)
for j = 1, #rows, 2 do
  local r = cjson.decode(rows[j + 1])
  if r.e <= now then
    redis.call('HDEL', key, rows[j])
  elseif rows[j] ~= ARGV[4] then
    if not before[r.s] then before[r.s] = 0; order[#order + 1] = r.s end
    before[r.s] = before[r.s] + r.t
    if r.e > last then last = r.e end
  end
end
redis.call('HSET', key, ARGV[4], cjson.encode({s = ARGV[5], t = tonumber(ARGV[6]), e = tonumber(ARGV[8])}))
redis.call('SADD', P .. 'reserving', ARGV[3])
redis.call('PEXPIREAT', key, math.ceil((last - tonumber(ARGV[9])) * 1000))
bump()
local out = {}
for _, subject in ipairs(order) do out[#out + 1] = subject; out[#out + 1] = tostring(before[subject]) end
return out
"""

_UNRESERVE = _HEAD + """
local gone = redis.call('HDEL', P .. 'res:' .. ARGV[3], ARGV[4])
if gone > 0 then bump() end
return gone
"""

_RESERVATIONS = """
-- ARGV: 1 prefix, 2 now. Rows: quoted provider, subject, tokens, end (live ones only).
local P, now, out = ARGV[1], tonumber(ARGV[2]), {}
for _, qp in ipairs(redis.call('SMEMBERS', P .. 'reserving')) do
  local key = P .. 'res:' .. qp
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', P .. 'reserving', qp)
  else
    local rows = redis.call('HGETALL', key)
    for j = 2, #rows, 2 do
      local r = cjson.decode(rows[j])
      if r.e > now then out[#out + 1] = {qp, r.s, tostring(r.t), tostring(r.e)} end
    end
  end
end
return out
"""

# The latest observation per (provider, subject): kept unless a later one is already there. "Later" is judged on the
# server's clock, the one clock every host shares: a reading dated more than ARGV[7] seconds past it (a host whose
# clock is ahead wrote it) is kept as of that bound, and a kept reading dated past it blocks nobody; otherwise one
# host an hour ahead would freeze the subject's reading for every coordinator for that hour.
_OBSERVE = _HEAD + """
-- ARGV: 3 quoted provider, 4 subject, 5 at, 6 encoded observation, 7 seconds past the server's clock believed
local key = P .. 'obs:' .. ARGV[3]
local t = redis.call('TIME')
local latest = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[7])
local at, value = tonumber(ARGV[5]), ARGV[6]
if at > latest then
  local o = cjson.decode(value)
  o.at = latest
  at, value = latest, cjson.encode(o)
end
local kept = redis.call('HGET', key, ARGV[4])
if kept then
  local kept_at = cjson.decode(kept).at
  if kept_at > at and kept_at <= latest then return 0 end
end
redis.call('HSET', key, ARGV[4], value)
redis.call('SADD', P .. 'observed', ARGV[3])
bump()
return 1
"""

_RUN = _HEAD + """
-- ARGV: 3 quoted provider, 4 quoted specialization, 5 at, 6 member ("tokens id"), 7 how many to keep
local key = P .. 'runs:' .. ARGV[3] .. ':' .. ARGV[4]
redis.call('ZADD', key, ARGV[5], ARGV[6])
redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(ARGV[7]) - 1)
return bump()
"""


def _run_args(run: RunRecord) -> list[str]:
    """The run script's arguments after the prefix and token: quoted provider and specialization, time, member
    ("tokens id": the random id makes two equal runs at the same instant two members)."""
    return [_q(run.provider), _q(run.specialization), repr(stored_epoch(run.at, "at")),
            f"{int(run.tokens)} {secrets.token_hex(6)}"]


_RUN_MEMBER = re.compile(r"(\d+) [0-9a-f]{12}")  # as _run_args writes it


def _head(text: str) -> str:
    """The printable ASCII beginning of `text`, at most 40 characters: what a SCAN pattern can name of it."""
    end = 0
    while end < min(len(text), 40) and " " <= text[end] <= "~":
        end += 1
    return text[:end]


def _glob(text: str) -> str:
    """`text` matched literally by a Redis SCAN pattern (a key prefix may hold `*`, `?`, `[`)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _q(name: str) -> str:
    """A provider or account name as a key part: percent-quoted, so ':' inside a name stays inside it."""
    return quote(name, safe="")


# Query arguments whose value may be a credential (redis-py takes ?password= and ?username= as the AUTH pair; a key
# file's passphrase is ssl_password): matched by name, case-insensitively, after percent-decoding.
_SECRET_ARGUMENT = re.compile(r"pass|user|secret|token|auth|cred|key", re.IGNORECASE)
SCHEMES = ("redis", "rediss", "unix")
HIDDEN = REDACTED  # as every other text adws hides a secret in


def _redacted_query(query: str) -> str:
    """`query` with the value of every argument that may be a credential replaced by HIDDEN (names kept)."""
    pieces = []
    for piece in query.split("&"):
        name, equals, _ = piece.partition("=")
        secret = _SECRET_ARGUMENT.search(unquote(name)) is not None
        pieces.append(f"{name}={HIDDEN}" if secret and equals else piece)
    return "&".join(pieces)


def _opaque(url: str) -> str:
    """A URL that cannot be parsed, for messages: whatever stands between its "://" (or its start) and its last "@"
    (user information, wherever it begins) and its whole query and fragment are HIDDEN; a text with neither "://"
    nor "@" (a password set where the URL goes?) is HIDDEN whole."""
    head, hash_mark, _ = url.partition("#")
    head, question, _ = head.partition("?")
    scheme, separator, rest = head.partition("://")
    if "@" in scheme or not separator:  # "://" inside the user information or none: no scheme to keep
        scheme, separator, rest = "", "", head
    _, at, after = rest.rpartition("@")
    if at:
        rest = f"{HIDDEN}@{after}"
    elif not separator:
        return HIDDEN
    return scheme + separator + rest + (f"?{HIDDEN}" if question else "") + (f"#{HIDDEN}" if hash_mark else "")


def redact(url: str) -> str:
    """The URL without any credential, for messages (a password must never reach a log or a terminal): the
    password of its user information (a user name alone, which may be a password written without its colon, too),
    the values of query arguments that may hold one (?password=, ?username=, ?ssl_password=: `_SECRET_ARGUMENT`)
    and any fragment become HIDDEN. A URL this cannot parse (no redis://, rediss:// or unix:// scheme, a bad port
    or IPv6 address) is redacted conservatively (`_opaque`). Never raises."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        return _opaque(url)
    if parts.scheme not in SCHEMES or not url.startswith(f"{parts.scheme}://"):
        return _opaque(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{hostport}" if colon else f"{HIDDEN}@{hostport}"
    query = f"?{_redacted_query(parts.query)}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}" + (f"#{HIDDEN}" if parts.fragment else "")


def url_problem(url: str) -> str | None:
    """What is wrong with the Redis URL `url` (None: nothing), in words naming no credential: a scheme other than
    redis://, rediss:// and unix://, a port that is not a number from 1 to 65535, a malformed IPv6 address, a path
    that is not a database number, and a query argument redis-py would refuse (a value of the wrong type, or an
    argument the connection does not take, such as ?ssl_ca_certs= on redis:// rather than rediss://). The argument
    check asks redis-py itself (it builds the connection object, which connects to nothing), when it is installed.
    Never raises."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        text = str(exc)
        if "Port" in text:
            return "its port is not a number from 1 to 65535"
        return f"it cannot be parsed ({text})"
    if parts.scheme not in SCHEMES or not url.startswith(f"{parts.scheme}://"):
        return "it is not a redis://, rediss:// or unix:// URL"
    if parts.scheme == "unix":
        if not parts.path:
            return "a unix:// URL needs the socket's path (unix:///path/redis.sock)"
    else:
        if port == 0:
            return "its port is not a number from 1 to 65535"
        database = unquote(parts.path).replace("/", "")
        if database and not database.isdigit():
            return f"its path must be a database number (/0), not {one_line(parts.path, 40)!r}"
    try:
        import redis
        from redis.connection import parse_url
    except ImportError:  # pragma: no cover - the test extra installs it
        return None
    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]
        connection = options.pop("connection_class", redis.Connection)
        connection(**options)  # builds the object only: connecting waits for the first command
    except TypeError as exc:  # "...__init__() got an unexpected keyword argument 'ssl_ca_certs'"
        found = re.search(r"argument '([^']*)'", str(exc))
        name = found.group(1) if found else "?"
        hint = " (TLS arguments need rediss://)" if name.startswith("ssl") and parts.scheme != "rediss" else ""
        return f"redis-py does not take the query argument {name!r} for a {parts.scheme}:// URL{hint}"
    except (ValueError, redis.RedisError) as exc:
        return one_line(str(exc) or type(exc).__name__)
    return None


def _usage_member(record: UsageRecord) -> str:
    """The sorted-set member of one usage row: "requests input output cost estimated id [model, task]".

    The numbers come first so the totals script matches them without a JSON parser; the random id makes two
    identical attempts in the same microsecond two rows, and a write retried after a dropped connection land
    on the same member instead of counting twice; model and task id (free text) go last, as JSON.
    """
    u = record.usage
    extra = json.dumps([record.model, record.task_id], separators=(",", ":"))
    return (f"{u.requests} {u.input_tokens} {u.output_tokens} {float(u.cost_usd)!r} {int(u.estimated)} "
            f"{secrets.token_hex(8)} {extra}")


def _member_record(provider: str, account: str, at: float, member: str) -> UsageRecord:
    requests, input_tokens, output_tokens, cost, estimated, _, extra = member.split(" ", 6)
    model, task_id = json.loads(extra)
    return UsageRecord(provider, account, stored_at(at, "at"),
                       _usage(requests, input_tokens, output_tokens, cost, estimated),
                       None if model is None else stored_text(model, "model"),
                       None if task_id is None else stored_text(task_id, "task_id"))


def _usage(requests: Any, input_tokens: Any, output_tokens: Any, cost_usd: Any, estimated: Any,
           high: float = MAX_STORED) -> Usage:
    """The Usage of a row's (or a sum's) figures as stored, text each: checked as every store checks them
    (`stored_usage`: whole numbers and money from 0 to `high`; NaN, a negative figure or text is damage). A sum of
    checked rows passes `high=math.inf` (base.MAX_STORED)."""
    return stored_usage(float(requests), float(input_tokens), float(output_tokens), float(cost_usd), int(estimated),
                        high=high)


def _breaker_value(state: BreakerState) -> str:
    opened = None if state.opened_at is None else stored_epoch(state.opened_at, "BreakerState.opened_at")
    return json.dumps([state.state, state.failures, opened], separators=(",", ":"))


def _breaker(value: str) -> BreakerState:
    state, failures, opened = json.loads(value)
    return BreakerState(state=stored_text(state, "breaker state"),
                        failures=stored_count(failures, "breaker failures", MAX_COUNT),
                        opened_at=None if opened is None else stored_at(opened, "breaker opened_at"))


def _log_record(entry: str) -> UsageRecord:
    """The usage row of a usage log entry ("{prov} {acct} at member")."""
    qp, qa, at, member = entry.split(" ", 3)
    return _member_record(unquote(qp), unquote(qa), float(at), member)


def _per_subject(flat: list[str]) -> dict[str, int]:
    """The reserve script's answer {subject, tokens, ...} as {subject: tokens}."""
    return {flat[i]: stored_count(float(flat[i + 1]), "reserved tokens") for i in range(0, len(flat), 2)}


def _lease(end: str, tokens: str, now: float) -> tuple[float, int]:
    """A reservation's end (epoch seconds, at most MAX_LEASE after `now`) and tokens, as stored."""
    return (stored_lease_end(float(end), "a reservation's end", now).timestamp(),
            stored_count(float(tokens), "reserved tokens", MAX_COUNT))


def _cursor(value: str | int, ahead: int = 0) -> int:
    """A stored round-robin cursor: a whole number from 0 to MAX_COUNT (+ `ahead`, a value just incremented)."""
    return stored_count(int(value), "cursor", MAX_COUNT + ahead)


def _lease_ends(ends: list[str], now: float) -> tuple[datetime, ...]:
    """A provider's lease ends as stored, each at most MAX_LEASE after `now` (epoch seconds)."""
    return tuple(stored_lease_end(float(end), "a lease's end", now) for end in ends)


def _run_tokens(member: str) -> int:
    """The tokens of a runs member ("tokens id", as _run_args writes it). Raises ValueError for anything else
    (a negative or malformed count included): callers report it through `_decoded`, naming the entry."""
    match = _RUN_MEMBER.fullmatch(member)
    if match is None:
        raise ValueError(f"not a run (tokens and a 12-digit id): {member!r}")
    return stored_count(int(match.group(1)), "a run's tokens", MAX_COUNT)


def _cooldown(value: str) -> tuple[str, str, float, Cooldown]:
    """Provider, account, end (epoch seconds) and the cooldown, of a stored cooldown value."""
    provider, account, until, reason = json.loads(value)
    return (stored_text(provider, "provider"), stored_text(account, "account"), until,
            Cooldown(until=stored_at(until, "until"), reason=stored_text(reason, "reason")))


def _observation(provider: str, subject: str, value: str) -> Observation:
    v = json.loads(value)
    return Observation(provider, subject, stored_at(v["at"], "observed at"), stored_amount(v["percent"], "percent"),
                       stored_text(v["source"], "source"),
                       None if v["used"] is None else stored_amount(v["used"], "observed use"),
                       None if v["limit"] is None else stored_amount(v["limit"], "observed limit", above_zero=True),
                       stored_at(v["reset_at"], "observed reset") if v["reset_at"] is not None else None)


# The type of each of a fleet's keys of fixed name (after the prefix), and of the keys an index set names:
# (index set, key stem, type) where each member m of the index names the key stem + m.
KEY_TYPES = {"v": "hash", "log": "list", "providers": "set", "cooldowns": "set", "cursors": "hash", "sticky": "hash",
             "breakers": "hash", "slotted": "set", "reserving": "set", "observed": "set"}
_INDEXED = (("providers", "accounts:", "set"), ("cooldowns", "cooldown:", "string"), ("slotted", "slots:", "zset"),
            ("reserving", "res:", "hash"), ("observed", "obs:", "hash"))
_INTEGER = re.compile(r"-?\d{1,19}")  # what HINCRBY counts on: a 64-bit integer in decimal


def _shown(value: str) -> str:
    """A stored value for a message: quoted, on one line, at most 60 characters."""
    return one_line(repr(value), 60)


# What decoding a stored value raises when it is not what this adws writes: bad JSON (ValueError), a field of the
# wrong type or shape, a number no datetime or int holds.
_DECODE_ERRORS = (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError)


class RedisStore(Closing):
    """`StateStore` on a Redis server (6.2 or newer: ZRANGE ... BYSCORE, SET ... PXAT).

    `url`: where the server is (see the module docstring); `key_prefix`: the namespace of this fleet's
    keys. Cooldown and lease keys expire at their end by the wall clock (PXAT, the server's clock, which
    hosts keep in step with NTP); `clock` (epoch seconds) is for tests and replays whose time is not the
    wall clock's: ends are then shifted by `clock() - time.time()` so a key outlives what that clock
    still considers running. `poll_interval_s`: the staleness bound of `version()`, on `monotonic`.
    Raises StateStoreError (naming the URL) when the server cannot be reached in `socket_connect_timeout`
    seconds or does not answer a command in `socket_timeout` seconds.
    """

    def __init__(self, url: str, *, key_prefix: str = DEFAULT_PREFIX, clock: Callable[[], float] | None = None,
                 poll_interval_s: float = POLL_INTERVAL_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        try:
            import redis  # the optional dependency: only needed by fleets that choose this backend
        except ImportError:  # pragma: no cover - the test extra installs it
            raise StateStoreError(f"state store {redact(url)}: the redis backend needs the redis package "
                                  "(pip install 'adws[redis]')") from None

        self.url = url
        self._where = redact(url)
        problem = url_problem(url)
        if problem is not None:  # refused here, in one line, rather than by redis-py at the first command
            raise StateStoreError(f"cannot open state store {self._where}: {problem}")
        self.prefix = key_prefix
        self._clock = clock
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        try:
            # One retry on a dropped connection (a restarted server): every write below is idempotent
            # or harmless to repeat (a cursor may skip one turn), never counted twice. Not on a timeout:
            # a server that accepts but never answers would hold us twice the declared bound.
            self._client: redis.Redis = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,  # ?socket_connect_timeout= in the URL wins
                socket_timeout=SOCKET_TIMEOUT_S,
                decode_responses=True,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except (ValueError, TypeError, redis.RedisError) as exc:
            raise StateStoreError(f"cannot open state store {self._where}: {one_line(str(exc))}") from None
        scripts = {
            "record": _RECORD, "totals": _TOTALS, "set_cooldown": _SET_COOLDOWN,
            "clear_cooldown": _CLEAR_COOLDOWN, "cooldowns": _COOLDOWNS, "next_cursor": _NEXT_CURSOR,
            "advance_cursor": _ADVANCE_CURSOR, "set_sticky": _SET_STICKY, "cas_breaker": _CAS_BREAKER,
            "acquire": _ACQUIRE, "release": _RELEASE, "active_slots": _ACTIVE_SLOTS, "roll_up": _ROLL_UP,
            "reserve": _RESERVE, "unreserve": _UNRESERVE, "reservations": _RESERVATIONS, "observe": _OBSERVE,
            "run": _RUN,
            "usage_since": _USAGE_SINCE,
        }
        self._scripts = {name: self._client.register_script(text) for name, text in scripts.items()}
        self._changes = ChangePoller(self._counter, poll_interval_s, monotonic)
        self._call(self._client.ping)  # refuse now, with the URL, rather than at the first route

    # -- plumbing --------------------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> NoReturn:
        import redis

        text = " ".join(str(exc).split()) or type(exc).__name__
        kwargs = self._client.connection_pool.connection_kwargs
        if isinstance(exc, redis.TimeoutError) and "connect" in text.lower():
            text = f"cannot reach the server within {kwargs['socket_connect_timeout']:g} s (connect timeout)"
        elif isinstance(exc, redis.TimeoutError):
            text = f"no answer within {kwargs['socket_timeout']:g} s (socket timeout)"
        elif isinstance(exc, redis.AuthenticationError):
            text = f"the server refused the credentials: {text}"
        elif isinstance(exc, redis.ConnectionError):
            text = f"cannot reach the server: {text}"
        elif isinstance(exc, redis.ResponseError):
            # A key of the wrong type or a counter that is not a number makes the server's error name no key
            # ("WRONGTYPE ... script: 7c03..."): find the key and say how to remove it, as for a value.
            self._name_damage()
            text = text.split(" script: ")[0]
        raise StateStoreError(f"state store {self._where}: {text}") from None

    def _damage(self, key: str, what: str, remove: tuple[str, ...], verb: str = "remove it") -> NoReturn:
        """The damage line of `_decoded` for `key`, which `what` describes; `remove` the redis-cli command removing
        just that entry (or key). redis-cli takes its arguments as typed, with no way to write a byte in hex: a key,
        field or member that is not short printable ASCII (`typable`: a tab, a NUL, a no-break space, an escape
        sequence, kilobytes) is not put in a command, where it would be changed on the way and name another entry, or
        none. The line then says how to find it (SCAN with its printable beginning) and why no command is given."""
        if all(typable(part) for part in remove):
            raise damaged_entry(self._where, f"key {key}", what,
                                f"{shlex.join(['redis-cli', *remove])}, against that server", verb)
        named = f"key {key}" if typable(key) else f"a key of {len(key)} characters starting {_shown(_head(key))}"
        if typable(key):  # the field or member is not: scan the key's entries by their beginning
            scan = {"HDEL": "HSCAN", "ZREM": "ZSCAN", "SREM": "SSCAN"}.get(remove[0], "HSCAN")
            find = shlex.join(["redis-cli", scan, key, "0", "MATCH", _glob(_head(remove[2])) + "*", "COUNT", "1000"])
            entry, whose = f"its entry starting {_shown(_head(remove[2]))}", "the entry's name"
        else:
            find = shlex.join(["redis-cli", "--scan", "--pattern", _glob(_head(key)) + "*"])
            entry, whose = "it", "the key's name"
        raise damaged_entry(
            self._where, named, what,
            f"{whose} is long or holds characters other than printable ASCII, which a redis-cli command cannot "
            f"carry exactly; find {entry} with {find}, against that server, and {remove[0]} it from a client that "
            "takes bytes", "remove it by hand")

    def _name_damage(self) -> None:
        """Raise the damage line (`_damage`) for the first of this fleet's keys that is of another type than adws
        keeps there (`KEY_TYPES`, and the keys the index sets name), or whose counter is not a whole number (the
        change counter's `n` and `lbase`, a round-robin cursor); return when none is (the server's error stands).
        A few round trips, only after a command failed; a read error on the way returns quietly."""
        import redis

        client: Any = self._client  # decode_responses: every reply is str
        try:
            for suffix, expected in KEY_TYPES.items():
                key = self.prefix + suffix
                self._expect_type(key, expected)
            for suffix, kind, expected in _INDEXED:
                for member in sorted(client.smembers(self.prefix + suffix))[:10_000]:
                    if suffix == "providers":
                        for qa in sorted(client.smembers(self._key("accounts", member)))[:10_000]:
                            self._expect_type(self._key("usage", member, qa), "zset")
                    self._expect_type(self.prefix + kind + member, expected)
            head = self.prefix + "runs:"
            for key in sorted(client.scan_iter(match=_glob(head) + "*", count=1000))[:10_000]:
                names = key[len(head):].split(":")
                if len(names) == 2 and all(names):
                    self._expect_type(key, "zset")
            counter = self._key("v")
            for field in ("n", "lbase"):
                value = client.hget(counter, field)
                if value is not None and not _INTEGER.fullmatch(value):
                    if field == "n":  # readers compare it for equality: set above any value it held, not removed
                        self._damage(counter, f"holds {_shown(value)} in field n, not a whole number",
                                     ("HSET", counter, "n", str(time.time_ns() // 1000)),
                                     "set it above any value it held (microseconds since the epoch), so that no "
                                     "reader's cached state looks current")
                    self._damage(counter, f"holds {_shown(value)} in field {field}, not a whole number",
                                 ("HDEL", counter, field))
            cursors = self._key("cursors")
            for name, value in sorted(client.hgetall(cursors).items()):
                if not _INTEGER.fullmatch(value):
                    self._damage(cursors, f"holds {_shown(value)} for cursor {_shown(name)}, not a whole number",
                                 ("HDEL", cursors, name))
        except redis.RedisError:
            return

    def _expect_type(self, key: str, expected: str) -> None:
        found = str(self._client.type(key))
        if found not in ("none", expected):
            self._damage(key, f"is a {found}, where adws keeps a {expected}", ("DEL", key))

    def _decoded(self, remove: tuple[str, ...], convert: Callable[..., _T], *args: Any) -> _T:
        """`convert(*args)` over a stored value. A value this adws cannot read (another program's, a hand edit) is a
        StateStoreError naming its key and the redis-cli command that removes just that entry (`remove`, e.g.
        ("HDEL", key, field)), as the SQLite store reports a damaged file: one line, never a traceback."""
        try:
            return convert(*args)
        except _DECODE_ERRORS as exc:
            self._damage(remove[1], f"holds a value this adws cannot read ({one_line(str(exc) or type(exc).__name__)})",
                         remove)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            self._fail(exc)
        except UnicodeDecodeError as exc:  # replies are decoded as UTF-8, all adws writes: another program's bytes
            raise StateStoreError(
                f"state store {self._where} is damaged: a value under the prefix {printable(self.prefix)} is not "
                f"UTF-8 text, which adws never writes ({one_line(str(exc))}); find it with redis-cli --scan --pattern "
                f"{shell_word(_glob(self.prefix) + '*')} and remove it, and the rest of the state stays") from None

    def _run(self, name: str, *args: object) -> Any:
        return self._call(self._scripts[name], args=[self.prefix, *args])

    def _write(self, name: str, *args: object) -> Any:
        result = self._run(name, secrets.token_hex(8), *args)
        self._changes.wrote()
        return result

    def _skew(self) -> float:
        """Seconds the store's clock is ahead of the wall clock (0 unless a clock was injected)."""
        return 0.0 if self._clock is None else self._clock() - time.time()

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _counter(self) -> tuple[str | None, str | None]:
        gen, n = self._call(self._client.hmget, self._key("v"), ["gen", "n"])
        return gen, n

    @property
    def location(self) -> str:
        return self._where

    @property
    def staleness_s(self) -> float:
        return self._changes.interval_s

    # -- usage -----------------------------------------------------------------------------------------

    def record_usage(self, record: UsageRecord) -> None:
        record = check_usage(record)
        at = stored_epoch(record.at, "UsageRecord.at")
        self._write("record", _q(record.provider), _q(record.account), repr(at), _usage_member(record), LOG_CAP)

    def _bulk(self, name: str, calls: Iterable[list[str]]) -> int:
        """Run the write script `name` once per argument list of `calls` (each after the prefix and a fresh
        token), IMPORT_BATCH to a pipeline: one round trip per batch instead of one per call. Returns how many."""
        script = self._scripts[name]
        count = 0
        pipe = None
        for args in calls:
            if pipe is None:
                pipe = self._client.pipeline(transaction=False)
            script(args=[self.prefix, secrets.token_hex(8), *args], client=pipe)
            count += 1
            if count % IMPORT_BATCH == 0:
                self._call(pipe.execute)
                pipe = None
        if pipe is not None:
            self._call(pipe.execute)
        self._changes.wrote()
        return count

    def import_usage(self, records: Iterable[UsageRecord]) -> int:
        # Every record checked (`check_usage`) before the first batch is written.
        return self._bulk("record", [[_q(r.provider), _q(r.account), repr(stored_epoch(r.at, "UsageRecord.at")),
                                      _usage_member(r), str(LOG_CAP)] for r in map(check_usage, records)])

    def usage_totals(
        self, since: Mapping[str, datetime], until: datetime | None = None
    ) -> dict[tuple[str, str], Usage]:
        if not since:
            return {}
        providers = list(since)
        args: list[object] = ["+inf" if until is None else f"({to_epoch(until, 'until')!r}", MAX_STORED]
        for provider in providers:
            args += [_q(provider), repr(to_epoch(since[provider], f"since[{provider!r}]"))]
        rows = self._run("totals", *args)
        if rows and rows[0][0] == "bad":
            _, qp, qa, member = rows[0]
            key = self._key("usage", qp, qa)
            self._decoded(("ZREM", key, member), _member_record, "", "", 0.0, member)  # names what Python finds
            # Python's float() takes forms Lua's tonumber does not ("1_000"): the script's verdict stands.
            self._damage(key, f"holds a usage row adws never writes: {_shown(member)}", ("ZREM", key, member))
        return {(providers[(index - 4) // 2], unquote(qa)): self._decoded(
            ("DEL", self._key("usage", _q(providers[(index - 4) // 2]), qa)), _usage, *sums, math.inf)
            for index, qa, *sums in rows}

    def oldest_usage(self, provider: str, account: str, since: datetime) -> datetime | None:
        start = to_epoch(since, "since")
        found = self._call(self._client.zrange, self._key("usage", _q(provider), _q(account)), repr(start), "+inf",
                           byscore=True, offset=0, num=1, withscores=True)
        return from_epoch(found[0][1]) if found else None

    def usage_cursor(self) -> UsageCursor:
        epoch, last, _ = self._run("usage_since", "", -1)
        return (str(epoch), int(last))

    def usage_since(self, cursor: UsageCursor) -> UsageChanges | None:
        epoch, last, entries = self._run("usage_since", str(cursor[0]), cursor[1])
        if int(last) < 0:
            return None
        log = self._key("log")  # a copy of the rows for readers: deleting it only makes them re-read the totals
        records = [self._decoded(("DEL", log), _log_record, entry) for entry in entries]
        return UsageChanges((str(epoch), int(last)), records)

    def usage_records(self) -> Iterator[UsageRecord]:
        rows: list[UsageRecord] = []
        for qp in sorted(self._call(self._client.smembers, self._key("providers"))):
            for qa in sorted(self._call(self._client.smembers, self._key("accounts", qp))):
                key = self._key("usage", qp, qa)
                for member, at in self._call(self._client.zrange, key, 0, -1, withscores=True):
                    rows.append(self._decoded(("ZREM", key, member), _member_record, unquote(qp), unquote(qa), at,
                                              member))
        rows.sort(key=lambda row: row.at)
        yield from rows

    def roll_up(self, before: datetime) -> int:
        cutoff = hour_start(to_epoch(before, "before"))
        removed = 0
        for qp in self._call(self._client.smembers, self._key("providers")):
            for qa in self._call(self._client.smembers, self._key("accounts", qp)):
                # One script per account: each account's roll-up is atomic, and none blocks the server long.
                removed += int(self._run("roll_up", secrets.token_hex(8), qp, qa, repr(cutoff), 3600,
                                         "h" + secrets.token_hex(4)))
        if removed:
            self._changes.wrote()
        return removed

    # -- cooldowns -------------------------------------------------------------------------------------

    def set_cooldown(self, provider: str, account: str, cooldown: Cooldown) -> None:
        until = stored_epoch(cooldown.until, "Cooldown.until")
        value = json.dumps([provider, account, until, cooldown.reason], separators=(",", ":"))
        expires = until - self._skew()
        at_ms = str(math.ceil(expires * 1000)) if expires > time.time() else ""
        self._write("set_cooldown", f"{_q(provider)}:{_q(account)}", value, at_ms)

    def clear_cooldown(self, provider: str, account: str) -> None:
        self._write("clear_cooldown", f"{_q(provider)}:{_q(account)}")

    def cooldowns(self, now: datetime) -> dict[tuple[str, str], Cooldown]:
        limit = to_epoch(now, "now")
        found: dict[tuple[str, str], Cooldown] = {}
        for member, value in self._run("cooldowns"):
            provider, account, until, cooldown = self._decoded(("DEL", self._key("cooldown", member)), _cooldown,
                                                               value)
            if until > limit:
                found[(provider, account)] = cooldown
        return found

    # -- cursors and sticky choices --------------------------------------------------------------------

    def next_cursor(self, key: str) -> int:
        return self._decoded(("HDEL", self._key("cursors"), key), _cursor, self._write("next_cursor", key), 1) - 1

    def advance_cursor(self, key: str, value: int) -> None:
        self._write("advance_cursor", key, int(value))

    def peek_cursor(self, key: str) -> int:
        value = self._call(self._client.hget, self._key("cursors"), key)
        return 0 if value is None else self._decoded(("HDEL", self._key("cursors"), key), _cursor, value)

    def cursors(self) -> dict[str, int]:
        found = self._call(self._client.hgetall, self._key("cursors"))
        return {k: self._decoded(("HDEL", self._key("cursors"), k), _cursor, v) for k, v in found.items()}

    def get_sticky(self, key: str) -> str | None:
        value = self._call(self._client.hget, self._key("sticky"), key)
        return None if value is None else str(value)

    def set_sticky(self, key: str, value: str) -> None:
        self._write("set_sticky", key, value)

    def sticky_choices(self) -> dict[str, str]:
        return dict(self._call(self._client.hgetall, self._key("sticky")))

    # -- circuit breakers ------------------------------------------------------------------------------

    def _stored_breaker(self, provider: str, value: str | None) -> BreakerState:
        """The breaker stored as `value` (None: none stored, closed)."""
        if value is None:
            return BreakerState()
        return self._decoded(("HDEL", self._key("breakers"), provider), _breaker, value)

    def get_breaker(self, provider: str) -> BreakerState:
        return self._stored_breaker(provider, self._call(self._client.hget, self._key("breakers"), provider))

    def update_breaker(self, provider: str, fn: Callable[[BreakerState], BreakerState]) -> BreakerState:
        for _ in range(CAS_ATTEMPTS):
            current = self._call(self._client.hget, self._key("breakers"), provider)
            new = fn(self._stored_breaker(provider, current))
            if self._write("cas_breaker", provider, current or "", _breaker_value(new)):
                return new
        raise StateStoreError(f"state store {self._where}: breaker of {provider} kept changing under "
                              f"{CAS_ATTEMPTS} attempts to update it")

    def breakers(self) -> dict[str, BreakerState]:
        stored = self._call(self._client.hgetall, self._key("breakers"))
        return {p: self._stored_breaker(p, v) for p, v in stored.items()}

    # -- concurrency slots -----------------------------------------------------------------------------

    def acquire_slot(self, provider: str, holder: str, limit: int, now: datetime, until: datetime) -> bool:
        start, end = check_lease(limit, now, until)
        return bool(self._write("acquire", _q(provider), holder, limit, repr(start), repr(end), repr(self._skew())))

    def release_slot(self, provider: str, holder: str) -> None:
        self._write("release", _q(provider), holder)

    def active_slots(self, now: datetime) -> dict[str, tuple[datetime, ...]]:
        start = to_epoch(now, "now")
        rows = self._run("active_slots", repr(start))
        return {unquote(qp): self._decoded(("DEL", self._key("slots", qp)), _lease_ends, ends, start)
                for qp, *ends in sorted(rows)}

    # -- reservations, observations, learned runs (issue 11) ---------------------------------------------

    def reserve(self, provider: str, subject: str, holder: str, tokens: int, now: datetime,
                until: datetime) -> dict[str, int]:
        start, end = check_reservation(tokens, now, until)
        flat = self._write("reserve", _q(provider), holder, subject, tokens, repr(start), repr(end),
                           repr(self._skew()))
        return self._decoded(("DEL", self._key("res", _q(provider))), _per_subject, flat)

    def release_reservation(self, provider: str, holder: str) -> None:
        self._write("unreserve", _q(provider), holder)

    def reservations(self, now: datetime) -> dict[tuple[str, str], tuple[tuple[int, datetime], ...]]:
        out: dict[tuple[str, str], list[tuple[float, int]]] = {}
        start = to_epoch(now, "now")
        for qp, subject, tokens, end in self._run("reservations", repr(start)):
            lease = self._decoded(("DEL", self._key("res", qp)), _lease, end, tokens, start)
            out.setdefault((unquote(qp), subject), []).append(lease)
        return {key: tuple((tokens, from_epoch(end)) for end, tokens in sorted(leases))
                for key, leases in out.items()}

    def record_observation(self, observation: Observation) -> bool:
        o = observation
        at = stored_epoch(o.at, "Observation.at")
        value = json.dumps({"at": at, "percent": o.percent, "source": o.source, "used": o.used, "limit": o.limit,
                            "reset_at": stored_epoch(o.reset_at, "Observation.reset_at") if o.reset_at else None})
        return bool(self._write("observe", _q(o.provider), o.subject, repr(at), value,
                                repr(FUTURE_TOLERANCE.total_seconds())))

    def observations(self) -> dict[tuple[str, str], Observation]:
        out = {}
        for qp in self._call(self._client.smembers, self._key("observed")):
            provider = unquote(qp)
            key = self.prefix + "obs:" + qp
            for subject, value in self._call(self._client.hgetall, key).items():
                out[(provider, subject)] = self._decoded(("HDEL", key, subject), _observation, provider, subject,
                                                         value)
        return out

    def _runs_key(self, provider: str, specialization: str) -> str:
        return self.prefix + "runs:" + _q(provider) + ":" + _q(specialization)

    def record_run(self, provider: str, specialization: str, at: datetime, tokens: int) -> None:
        self._write("run", *_run_args(RunRecord(provider, specialization, at, tokens)), base.RUNS_KEPT)

    def recent_runs(self, provider: str, specialization: str, limit: int) -> list[int]:
        key = self._runs_key(provider, specialization)
        members = self._call(self._client.zrevrange, key, 0, limit - 1)
        return [self._decoded(("ZREM", key, member), _run_tokens, member) for member in members]

    def _run_groups(self) -> list[tuple[str, str, str]]:
        """(provider, specialization, key) of every runs key, in name order. Found with SCAN (`{p}runs:*`, sorted sets
        only), since runs are stored without an index of their groups; SCAN may return a key more than once (the
        keyspace was resized meanwhile), so the keys are gathered in a set first."""
        head = self.prefix + "runs:"
        keys = self._call(lambda: set(self._client.scan_iter(match=_glob(head) + "*", count=1000, _type="zset")))
        groups = []
        for key in keys:
            names = key[len(head):].split(":")
            if len(names) == 2 and all(names):  # quoted names hold no ':': another shape is not a runs key
                groups.append((unquote(names[0]), unquote(names[1]), key))
        return sorted(groups)

    def _read_runs(self, keys: list[str]) -> list[list[tuple[str, float]]]:
        """Every (member, time) of each of the runs `keys`, oldest first: one round trip for them all."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.zrange(key, 0, -1, withscores=True)
        return list(self._call(pipe.execute)) if keys else []

    def recorded_runs(self) -> Iterator[RunRecord]:
        """Every group's kept runs (`_run_groups`). Two round trips (more while SCAN pages); for `adws state
        export` and import, not routing."""
        groups = self._run_groups()
        runs: list[RunRecord] = []
        for (provider, specialization, key), rows in zip(groups, self._read_runs([g[2] for g in groups]),
                                                          strict=True):
            found = [(_RUN_MEMBER.fullmatch(member), member, at) for member, at in rows]
            # A fleet whose prefix is ours + "runs:" has keys of the same shape (its slots:{prov}): no member is a
            # run there, and the key is not ours. Where some are, the others are damage, said as recent_runs says
            # it: a group left out without a word would be lost by an export and import.
            if not any(match is not None for match, _, _ in found):
                continue
            for match, member, at in found:
                tokens = int(match.group(1)) if match is not None else \
                    self._decoded(("ZREM", key, member), _run_tokens, member)  # raises, naming the entry
                runs.append(RunRecord(provider, specialization, from_epoch(at), tokens))
        return iter(runs)

    def import_runs(self, runs: Iterable[RunRecord]) -> RunsImported:
        """Record the runs through the same script as `record_run` (pipelined), each group's kept runs read first
        (one round trip) so that only the runs among the newest RUNS_KEPT of the group's old and new are written:
        a large import never writes runs only to trim them again. Counts the store's own runs they push out
        (predicted from that read: the runs with the lowest time, ties in member order, as Redis ranks them), and
        checks how many of the written ones are still kept at the end (one more round trip: another coordinator
        may be recording runs meanwhile)."""
        cap = base.RUNS_KEPT  # read at call time, as by every backend: tests lower it
        given: dict[str, list[tuple[float, str, list[str]]]] = {}  # per key: (time, member, script arguments)
        for run in runs:
            args = _run_args(run)
            given.setdefault(self._runs_key(run.provider, run.specialization), []).append(
                (float(args[2]), args[3], [*args, str(cap)]))
        keys = list(given)
        written: dict[str, list[str]] = {}  # the members written, per key
        displaced = 0
        for key, held in zip(keys, self._read_runs(keys), strict=True):
            # Sorted-set order: by time, then by member. The newest RUNS_KEPT of old and new stay.
            ranked: list[tuple[float, str, list[str] | None]] = [(at, member, None) for member, at in held]
            ranked += given[key]
            ranked.sort(key=lambda row: (row[0], row[1]))
            dropped = ranked[:max(len(ranked) - cap, 0)]
            displaced += sum(args is None for _, _, args in dropped)
            written[key] = [member for _, member, args in ranked[len(dropped):] if args is not None]
        kept = {member for members in written.values() for member in members}
        self._bulk("run", (args for key in keys for _, member, args in given[key] if member in kept))
        pipe = self._client.pipeline(transaction=False)
        for key, members in written.items():
            if members:
                pipe.zmscore(key, members)
        still = sum(score is not None for scores in self._call(pipe.execute) for score in scores)
        return RunsImported(still, displaced)

    # -- change detection ------------------------------------------------------------------------------

    def change_counts(self) -> None:
        """None: the server keeps one change counter for every kind, so a reader re-reads every kind after a
        change (8 round trips; usage itself is read incrementally, `usage_since`)."""
        return None

    def version(self) -> int:
        return self._changes.version()

    def close(self) -> None:
        self._client.close()
