"""Schemathesis hooks of `make security` (loaded through SCHEMATHESIS_HOOKS by the CLI).

A generated image key is almost never under the fuzzed user's prefix, so nearly every
`POST /api/albums` would stop at the 422 for a foreign key and nothing behind it (the store,
the outbox, the album's own pages) would be fuzzed. Half the bodies get their keys moved
under the prefix, keeping the generated characters."""

from __future__ import annotations

import os
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

#: What key_is_callers refuses outright; the rest of a generated key is kept.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\/.]")


def _under_prefix(body: dict[str, Any], prefix: str) -> dict[str, Any]:
    def moved(position: int, key: Any) -> Any:
        if not isinstance(key, str):
            return key  # a wrong type stays wrong: that is what the case is testing
        return f"{prefix}{position}-{_UNSAFE.sub('', key)}"

    images = [
        {**item, "key": moved(n, item.get("key"))} if isinstance(item, dict) else moved(n, item)
        for n, item in enumerate(body["images"])
    ]
    return {**body, "images": images}


# schemathesis is untyped to mypy in the dev venv, where mypy runs (the `security` extra has it).
@schemathesis.hook  # type: ignore[untyped-decorator]
def flatmap_body(context: schemathesis.HookContext, body: Any) -> Any:
    prefix = os.environ.get("FUZZ_IMAGE_PREFIX", "")
    operation = context.operation
    if (
        not prefix
        or operation is None
        or operation.path != "/api/albums"
        or not isinstance(body, dict)
        or not isinstance(body.get("images"), list)
    ):
        return st.just(body)
    return st.sampled_from([body, _under_prefix(body, prefix)])
