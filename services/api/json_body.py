"""A request's JSON body, or a reason it is unreadable: the JSON API's 400 (issue 11).

A body that does not parse, or nests deeper than any request of ours can, is refused before
any validation: 400 says "this is not a readable request", 422 (validation.py) "a readable
request that asks for something we refuse". The parser's own recursion limit turns a body of
a hundred thousand brackets into a RecursionError, caught here (never a 500); what parses is
then held to MAX_DEPTH, so nothing deeper reaches validation. A whole number longer than the
interpreter's limit for `int()` (4300 digits unless PYTHONINTMAXSTRDIGITS says otherwise;
CVE-2020-10735) is refused too: `json.loads` lets that plain ValueError through (it was a 500).
"""

from __future__ import annotations

import json
import sys

#: No request of ours nests deeper than 3 (an album, its images, one image); room to spare.
MAX_DEPTH = 32


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
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableBody(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:  # a number past int()'s digits (CVE-2020-10735): the process's limit
        limit = sys.get_int_max_str_digits()
        raise UnreadableBody(
            f"the body is not JSON this API reads: a number has more than {limit} digits"
        ) from None
    except RecursionError:  # deeper than the parser goes: far too deep
        raise _too_deep() from None
    if not within_depth(value):
        raise _too_deep()
    return value


def within_depth(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether no array or object in `value` nests deeper than `limit`: a walk level by level
    (no recursion) over the containers only, that stops at the first level too deep."""
    level: list[dict[str, object] | list[object]] = (
        [value] if isinstance(value, dict | list) else []
    )
    for _ in range(limit):
        deeper: list[dict[str, object] | list[object]] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            deeper += [c for c in children if isinstance(c, dict | list)]
        if not deeper:
            return True
        level = deeper
    return False


def _too_deep() -> UnreadableBody:
    return UnreadableBody(
        f"the body is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects"
    )
