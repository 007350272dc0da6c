"""Whole numbers a client writes in a query string or a form (`?page=`, `?limit=`,
`?photos=`, a dead-letter group's `code`): read within bounds, or refused with the reason.

Every such number is read here, never by a bare `int()`: Python refuses more than 4300 digits
with a ValueError (CVE-2020-10735), and a number past what the store's integers hold fails in
its driver (SQLite: OverflowError; PostgreSQL: an out-of-range error). Both were 500s. The
digits are counted before `int()` sees them, and the value is held to bounds the store's
columns and offsets can take, so a bad number is the caller's 400 with the reason.
"""

from __future__ import annotations

#: The furthest page of a listing a link may ask for: 50 a page, far more than any listing
#: holds, and its offset far inside the store's 64-bit integers.
MAX_PAGE = 999_999
#: A 32-bit INTEGER column's range (the dead letters' Graph `code`).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class BadNumber(ValueError):
    """A number the caller sent that is no whole number within its bounds: `reason` names it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def whole_number(text: str, name: str, low: int, high: int) -> int:
    """`text` as an int from `low` to `high` (ASCII digits, a leading "-" only if `low` is
    negative), or BadNumber naming `name` and the bounds."""
    negative = low < 0 and text.startswith("-")
    digits = text[1:] if negative else text
    significant = digits.lstrip("0") or "0"  # leading zeros count for int()'s limit too
    widest = len(str(max(-low, high)))
    if not (digits.isascii() and digits.isdigit()) or len(significant) > widest:
        raise BadNumber(_reason(name, low, high))
    value = -int(significant) if negative else int(significant)
    if not low <= value <= high:
        raise BadNumber(_reason(name, low, high))
    return value


def page_number(text: str | None, name: str = "page") -> int:
    """A listing's page, 1 when the link names none."""
    return 1 if text is None else whole_number(text, name, 1, MAX_PAGE)


def _reason(name: str, low: int, high: int) -> str:
    return f"{name}: a whole number from {low} to {high}"
