"""Is a parsed JSON value something PostgreSQL's `jsonb` can store, and the service can send back?

Python's `json` parser accepts more than `jsonb` does. Unchecked, these reach the INSERT and fail there
(HTTP 500), or are stored and then fail on the way out (a retrying client duplicates them):

- the NUL character U+0000, in a string or an object key (`jsonb` rejects `\\u0000`);
- a lone UTF-16 surrogate such as `\\ud800` (not a character; cannot be encoded as UTF-8);
- `NaN`, `Infinity`, `-Infinity`, and numbers that overflow a double to infinity (`1e999`): not JSON numbers;
- nesting deeper than MAX_DEPTH objects/arrays. PostgreSQL itself has no fixed limit (its parser stops at
  `max_stack_depth`), but deep values also break response serialisation; 32 is far beyond any real
  event payload. https://www.postgresql.org/docs/current/datatype-json.html

`find_unstorable` walks the value without recursion, so no input can exhaust Python's stack.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32  # objects/arrays, counting the outermost one as 1
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "data.steps[3].{key 2}"; client keys appear only if plain (never echo arbitrary input)
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class UnstorableJson(ValueError):
    """A value that `jsonb` cannot store; `problem` names where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _key_path(parent: str, key: str, ordinal: int) -> str:
    return f"{parent}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{parent}.{{key {ordinal}}}"


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains the NUL character (\\u0000), which PostgreSQL jsonb cannot store"
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not a character"
    return None


def find_unstorable(value: Any, root: str = "data", max_depth: int = MAX_DEPTH) -> Problem | None:
    """The first place in `value` (parsed JSON: dict, list, str, int, float, bool, None) jsonb cannot store.

    Returns None when all of it can be stored. Checks object keys and string values for NUL and lone
    surrogates, floats for NaN/Infinity, and the nesting depth against `max_depth` (containers).
    """
    stack: list[tuple[Any, str, int]] = [(value, root, 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return Problem(path, f"nested more than {max_depth} levels deep (objects and arrays)")
            if isinstance(item, dict):
                children = []
                for ordinal, (key, child) in enumerate(item.items(), start=1):
                    child_path = _key_path(path, key, ordinal)
                    if (reason := _text_problem(key)) is not None:
                        return Problem(f"{path}.{{key {ordinal}}}", "object key " + reason)
                    children.append((child, child_path, depth + 1))
            else:
                children = [(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))
        elif isinstance(item, str):
            if (reason := _text_problem(item)) is not None:
                return Problem(path, reason)
        elif isinstance(item, float) and not math.isfinite(item):
            return Problem(path, "is NaN or infinite (or overflows a double); JSON numbers must be finite")
    return None


def check_storable(value: Any, root: str = "data") -> None:
    """Raise UnstorableJson if `find_unstorable` finds a problem."""
    if (problem := find_unstorable(value, root)) is not None:
        raise UnstorableJson(problem)
