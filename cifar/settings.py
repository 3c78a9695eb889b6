"""`--set KEY=VALUE`: change any entry of a run's configuration, nested ones included.

KEY is a dotted path into the resolved config (`muon.lr`, `model.widths`, `lookahead`), VALUE
is JSON (`0.16`, `[56,160,160]`, `null`, `{"every": 5, "decay": 0.95}`) or, failing that, a
plain string. The run's `config.json` records the result, so a run made with `--set` is
rebuilt from its run directory like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from cifar.errors import CifarError


def parse_setting(text: str) -> tuple[list[str], Any]:
    """`"muon.lr=0.16"` -> (["muon", "lr"], 0.16)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set: expected KEY=VALUE with KEY a dotted config path, such as "
                         f"muon.lr=0.16, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


def apply_settings(config: dict[str, Any], settings: Sequence[tuple[list[str], Any]]
                   ) -> dict[str, Any]:
    """Apply `settings` ((path, value) pairs from `parse_setting`) to `config` in place and
    return it. Every key must exist already, and a value must have the type of the one it
    replaces (int and float mix; null or a dict may replace a dict, or null)."""
    for path, value in settings:
        parent = config
        for depth, part in enumerate(path[:-1]):
            parent = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                where = ".".join(path[:depth + 1])
                raise ValueError(f"--set {'.'.join(path)}: {where} is not a table of settings "
                                 f"in this config (it is {json.dumps(parent)}); set {where} "
                                 f"whole, e.g. --set {where}='{{...}}'")
        key = path[-1]
        if key not in parent:
            raise ValueError(f"--set {'.'.join(path)}: no such setting; expected one of "
                             f"{sorted(parent)}")
        _check_type(".".join(path), parent[key], value)
        parent[key] = value
    return config


def _check_type(name: str, old: Any, new: Any) -> None:
    if old is None or new is None or isinstance(old, dict) and isinstance(new, dict):
        return
    numbers = (int, float)
    same = (isinstance(old, bool) == isinstance(new, bool)
            and (isinstance(old, numbers) and isinstance(new, numbers) or type(old) is type(new)))
    if not same:
        kind = type(old).__name__
        raise ValueError(f"--set {name}: expected {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                         f"like {json.dumps(old)}, got {json.dumps(new)}")


def is_number(value: Any) -> bool:
    """Whether `value` is a JSON number (an int or a float, not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_count(value: Any, minimum: int = 0) -> bool:
    """Whether `value` is a whole number (not a bool or a float) of at least `minimum`."""
    return type(value) is int and value >= minimum


def check_table(name: str, table: Any,
                fields: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Refuse config entry `name` unless it is null or a table with exactly the keys of
    `fields`, each value passing its test; `fields` maps a key to (test, what it expects),
    and the error spells out the whole expected table."""
    if table is None:
        return
    if not (isinstance(table, dict) and set(table) == set(fields)
            and all(test(table[key]) for key, (test, _) in fields.items())):
        expected = ", ".join(f'"{key}": {wanted}' for key, (_, wanted) in fields.items())
        raise CifarError(f"{name}: expected null or {{{expected}}}, got {table!r}")
