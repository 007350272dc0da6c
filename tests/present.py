"""`present(x)`: what a test expects to be there, as its type without None.

The store's look-ups (`album`, `page`, ...) answer None for a missing row; a test that reads a
row it made fails at the read, naming the None, instead of on an attribute of it.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def present(value: T | None) -> T:
    assert value is not None, "expected a value, found None"
    return value
