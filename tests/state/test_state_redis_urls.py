"""The Redis URL: no credential in it ever reaches a message (`redact`), and one redis-py would refuse is refused at
load and check time, at its place, and when a store is opened from ADWS_STATE_URL: one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from adws.cli import main
from adws.config.load import compile_config, parse_toml
from adws.errors import ConfigError
from adws.state import RedisStore, StateStoreError, open_store
from adws.state.redis_store import redact, url_problem
from tests.helpers import CLAUDE_CONFIG
from tests.redis_server import RedisServer

SECRET = "hunterpw123"

# URLs holding SECRET in each place a credential can stand, well-formed or not.
WITH_SECRETS = [
    f"redis://:{SECRET}@127.0.0.1:6391/0",
    f"redis://user:{SECRET}@127.0.0.1:6391/0",
    f"redis://{SECRET}@127.0.0.1:6391/0",  # a password written without its colon: redis-py takes it as the user
    f"redis://127.0.0.1:6391/0?password={SECRET}",
    f"redis://127.0.0.1:6391/0?username={SECRET}&password={SECRET}",
    f"redis://127.0.0.1:6391/0?Password={SECRET}",
    f"redis://127.0.0.1:6391/0?pass%77ord={SECRET}",
    f"rediss://127.0.0.1:6391/0?ssl_ca_certs=/ca.pem&ssl_password={SECRET}",
    f"unix:///run/redis.sock?password={SECRET}",
    f"unix://:{SECRET}@/run/redis.sock",
    f"redis://127.0.0.1:6391/0#{SECRET}",
    f"redis//:{SECRET}@127.0.0.1",  # malformed: no scheme
    f"redis://:{SECRET}@127.0.0.1:notaport/0",
    f"redis://:{SECRET}@127.0.0.1:99999/0",
    f"redis://:{SECRET}@[::1:6391/0",
    f"redis://:{SECRET}@127.0.0.1:6391/0?ssl_ca_certs=/x",
    f"redis://:a://{SECRET}@127.0.0.1/0",
    f"redis://a@b:{SECRET}@h:99999/0?x={SECRET}",
    f"REDIS://:{SECRET}@h/0",
    f"http://:{SECRET}@h/0",
    SECRET,  # a password set where the URL goes
    f"redis:{SECRET}@h",
]


@pytest.mark.parametrize("url", WITH_SECRETS)
def test_no_credential_survives_redaction(url: str) -> None:
    shown = redact(url)
    assert SECRET not in shown and "***" in shown
    problem = url_problem(url)
    assert problem is None or SECRET not in problem


def test_what_redaction_keeps() -> None:
    assert redact("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact("rediss://user:pw@h/2") == "rediss://user:***@h/2"
    assert redact("redis://h:6379/0?socket_timeout=2&password=x") == "redis://h:6379/0?socket_timeout=2&password=***"
    assert redact("unix:///run/redis.sock?db=2") == "unix:///run/redis.sock?db=2"
    assert redact("redis//:pw@127.0.0.1") == "***@127.0.0.1"
    assert redact("redis://:pw@127.0.0.1:notaport/0?password=x") == "redis://***@127.0.0.1:notaport/0?***"


BAD_URLS = {
    "redis://:pw@127.0.0.1:notaport/0": "its port is not a number from 1 to 65535",
    "redis://:pw@127.0.0.1:99999/0": "its port is not a number from 1 to 65535",
    "redis://:pw@[::1:6391/0": "it cannot be parsed (Invalid IPv6 URL)",
    "redis://:pw@127.0.0.1:6391/0?ssl_ca_certs=/x": "does not take the query argument 'ssl_ca_certs' for a redis:// "
                                                    "URL (TLS arguments need rediss://)",
    "redis://127.0.0.1:6391/0?socket_timeout=soon": "Invalid value for 'socket_timeout'",
    "redis://127.0.0.1:6391/zero": "its path must be a database number",
    "redis//:pw@127.0.0.1": "it is not a redis://, rediss:// or unix:// URL",
    "http://127.0.0.1:6391/0": "it is not a redis://, rediss:// or unix:// URL",
    "unix://": "a unix:// URL needs the socket's path (unix:///path/redis.sock)",
}


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_a_bad_url_is_one_line_when_a_store_is_opened(url: str) -> None:
    assert BAD_URLS[url] in (url_problem(url) or "")
    with pytest.raises(StateStoreError) as exc:
        RedisStore(url)
    message = str(exc.value)
    assert BAD_URLS[url] in message and "\n" not in message and "pw" not in message.replace("pw@", "")
    with pytest.raises(StateStoreError) as exc:
        open_store("redis", None, env={"ADWS_STATE_URL": url})
    assert str(exc.value).startswith("ADWS_STATE_URL is not a usable location: ") and BAD_URLS[url] in str(exc.value)


def test_good_urls_have_no_problem() -> None:
    for url in ("redis://127.0.0.1:6379/0", "redis://:pw@h:6379/2?socket_connect_timeout=1&socket_timeout=2",
                "rediss://:pw@h:6380/0?ssl_ca_certs=/ca.pem", "unix:///run/redis.sock?db=1", "redis://h",
                "redis:///0"):
        assert url_problem(url) is None, url


def _redis_config(url: str) -> str:
    return CLAUDE_CONFIG.replace("TIMEOUT", "30") + f'[state]\nbackend = "redis"\nurl = "{url}"\n'


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_a_bad_url_is_a_config_problem_at_its_place(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        compile_config(parse_toml(_redis_config(url)), "c.toml")
    text = str(exc.value)
    assert "state → url: " in text and BAD_URLS[url] in text and ":pw@" not in text


def test_adws_check_names_the_url_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(_redis_config("redis://:pw@127.0.0.1:99999/0"), encoding="utf-8")
    code = main(["check", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in out + err
    assert "its port is not a number from 1 to 65535" in out + err and ":pw@" not in out + err


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_a_bad_environment_url_is_one_line_on_the_command_line(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(_redis_config("redis://127.0.0.1:6379/0"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADWS_STATE_URL", url)
    code = main(["quota", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert BAD_URLS[url] in err and "pw" not in err.replace("pw@", "")


def test_a_refused_password_given_as_a_query_argument_is_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer.start(tmp_path / "redis", "--requirepass", "rightpassword77")
    try:
        config = tmp_path / "c.toml"
        config.write_text(_redis_config(server.url), encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        for url in (f"{server.url}?password=wrongpassword99", f"redis://:wrongpassword99@127.0.0.1:{server.port}/0",
                    f"{server.url}?username=default&password=wrongpassword99"):
            monkeypatch.setenv("ADWS_STATE_URL", url)
            code = main(["quota", "--config", str(config)])
            err = capsys.readouterr().err
            assert code == 2 and "refused the credentials" in err
            assert "wrongpassword99" not in err and "***" in err
    finally:
        server.stop()
