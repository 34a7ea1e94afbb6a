"""The line scan behind `config.toml:42: …`: headers, arrays of tables, quoted and dotted keys, multi-line strings."""

from __future__ import annotations

from adws.config.lines import key_lines, line_of

TEXT = '''# comment
[routing]
timezone = "UTC"
[[routing.rules]]
name = "a"
conditions = { "attrs.x" = 1 }
[[routing.rules]]
name = "b"
[routing.rules.conditions]
"attrs.author.login" = "octocat"
[providers.x]
description = """
[not.a.header]
fake = 1
"""
command_template = [
  "x",
  "[y]",
]
models."gpt-4.1" = { context_window = 1 }
[[providers.x.accounts]]
name = "one"
[[providers.y.accounts]]
name = "two"
[[providers.x.accounts]]
name = "three"
'''


def test_lines_of_tables_keys_and_array_entries() -> None:
    lines = key_lines(TEXT)
    assert line_of(("routing", "timezone"), lines) == 3
    assert line_of(("routing", "rules", 0, "conditions", "attrs.x"), lines) == 6  # inside an inline table
    assert line_of(("routing", "rules", 1, "name"), lines) == 8
    assert line_of(("routing", "rules", 1, "conditions", "attrs.author.login"), lines) == 10
    assert line_of(("providers", "x", "command_template", 1), lines) == 16  # the key that opens the array
    assert line_of(("providers", "x", "models", "gpt-4.1", "context_window"), lines) == 20
    assert line_of(("providers", "x", "accounts", 1, "name"), lines) == 26  # its own count per array
    assert line_of(("providers", "y", "accounts", 0), lines) == 23


def test_text_inside_a_multi_line_string_is_not_read_as_keys() -> None:
    lines = key_lines(TEXT)
    assert ("not", "a", "header") not in lines and ("providers", "x", "fake") not in lines
    assert line_of(("providers", "x", "description"), lines) == 12


def test_a_place_the_scan_does_not_know_has_no_line() -> None:
    assert line_of(("state", "backend"), key_lines(TEXT)) is None
