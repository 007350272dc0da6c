"""A request's JSON body, or a reason it is unreadable: the JSON API's 400 (issue 11).

A body that does not parse, or nests deeper than any request of ours can, is refused before
any validation: 400 says "this is not a readable request", 422 (validation.py) "a readable
request that asks for something we refuse". Depth is counted before parsing, so a body of a
hundred thousand brackets costs one linear scan and never reaches the recursive parser.
"""

from __future__ import annotations

import json
import re

#: No request of ours nests deeper than 3 (an album, its images, one image); room to spare.
MAX_DEPTH = 32
#: JSON strings (with their escapes): brackets inside them do not nest anything.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class UnreadableBody(ValueError):
    """The body is no JSON this API reads; `reason` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse(raw: bytes) -> object:
    """The body's JSON value, or UnreadableBody."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableBody("the body is not valid JSON: it is not UTF-8 text") from None
    if depth(text) > MAX_DEPTH:
        raise UnreadableBody(f"the body is nested too deeply: at most {MAX_DEPTH} levels of "
                             "arrays and objects")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableBody(f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, "
                             f"column {exc.colno})") from None
    except RecursionError:  # the depth check should have caught it; never a 500 all the same
        raise UnreadableBody("the body is nested too deeply") from None


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, read as JSON (strings skipped)."""
    deepest = level = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        level += 1 if match.group() in "[{" else -1
        deepest = max(deepest, level)
    return deepest
