#!/usr/bin/env python3
"""An agent CLI that misbehaves on purpose, for the issue-9 tests. Standard library only (a foreign program).

Usage: hostile_agent.py MODE [PROMPT]. The prompt is argv[2] when given, else standard input. Modes:
  ok            print "done", exit 0
  leak          answer "done; the key was $H_API_KEY" and quote the prompt, exit 0
  echo_secret   print every environment value whose name ends in KEY or TOKEN into an error, exit 1
  encode_secret the same values encoded as programs print them (a Basic-auth header, `base64`, a URL, JSON,
                HTML, hex) into an error, exit 1
  echo_prompt   print "error: could not handle: <prompt>" on stderr, exit 1
  env           print the environment as JSON (values reversed), exit 0
  daemon        double fork + setsid a helper that sleeps (its pid in $HOSTILE_PIDFILE), then exit 0
  daemon_hang   the same, then sleep until killed
  hang          write own pid to $HOSTILE_PIDFILE, sleep until killed
  big           print $HOSTILE_BYTES bytes on stdout, exit 0
  gate          append own pid to $HOSTILE_PIDFILE, wait (at most 60 s) until the file $HOSTILE_GATE exists, exit 0
  fill          fill the file system of $HOSTILE_FILL with one file until it is full, print "done", exit 0
"""

from __future__ import annotations

import base64
import html
import json
import os
import sys
import time
import urllib.parse


def _daemonise(pidfile: str) -> None:
    if os.fork() > 0:
        return
    os.setsid()  # its own session and process group: the attempt's group signal no longer reaches it
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(pidfile, "a", encoding="ascii") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(300)
    os._exit(0)


def encodings(value: str) -> list[str]:
    """`value` as programs print it encoded (tests/test_redact.py looks for each of these lines' payloads)."""
    return [
        "> Authorization: Basic " + base64.b64encode(f"x-access-token:{value}".encode()).decode(),
        "$ echo $KEY | base64\n" + base64.encodebytes(f"{value}\n".encode()).decode().rstrip("\n"),
        "GET /v1/models?key=" + urllib.parse.quote(value, safe="") + " HTTP/1.1",
        json.dumps({"error": {"message": f"bad key {value}"}}),
        "<p>key " + html.escape(value) + "</p>",
        "key bytes " + value.encode().hex(),
    ]


def main() -> int:
    mode = sys.argv[1]
    prompt = sys.argv[2] if len(sys.argv) > 2 else sys.stdin.read()
    if mode == "ok":
        print("done")
        return 0
    if mode == "leak":
        print(f"done; the key was {os.environ.get('H_API_KEY')}; you asked: {prompt}")
        return 0
    if mode == "echo_secret":
        for name, value in os.environ.items():
            if name.endswith(("KEY", "TOKEN", "PASSWORD")):
                print(f"Invalid API key: {value}", file=sys.stderr)
        return 1
    if mode == "encode_secret":
        print("Invalid API key", file=sys.stderr)
        for name, value in os.environ.items():
            if name.endswith(("KEY", "TOKEN", "PASSWORD")):
                for line in encodings(value):
                    print(line, file=sys.stderr)
        return 1
    if mode == "echo_prompt":
        print(f"error: could not handle: {prompt}", file=sys.stderr)
        return 1
    if mode == "env":
        # Values reversed, so that adws's log redaction does not hide what the child really received.
        print(json.dumps({name: value[::-1] for name, value in os.environ.items()}))
        return 0
    if mode in ("daemon", "daemon_hang"):
        _daemonise(os.environ["HOSTILE_PIDFILE"])
        time.sleep(0.2)  # let the helper write its pid
        if mode == "daemon":
            print("done")
            return 0
    if mode in ("hang", "daemon_hang"):
        if mode == "hang":
            with open(os.environ["HOSTILE_PIDFILE"], "a", encoding="ascii") as fh:
                fh.write(f"{os.getpid()}\n")
        print("working", flush=True)
        time.sleep(300)
        return 0
    if mode == "gate":
        with open(os.environ["HOSTILE_PIDFILE"], "a", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["HOSTILE_GATE"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        print("done")
        return 0
    if mode == "fill":
        try:
            with open(os.environ["HOSTILE_FILL"], "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        except OSError:
            pass
        print("done")
        return 0
    if mode == "big":
        sys.stdout.write("x" * int(os.environ["HOSTILE_BYTES"]))
        return 0
    print(f"unknown mode {mode}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
