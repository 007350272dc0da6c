"""One Jinja bytecode cache for every Flask app the unit tests build.

Each app has its own Jinja environment and would compile each template it renders again
(some 500 compilations, a quarter of the unit suite's time); the compiled code is the same
for every app, so it is kept here, in memory, keyed by the template's name and checked
against its source by Jinja.
"""

from __future__ import annotations

from jinja2.bccache import Bucket, BytecodeCache


class SharedTemplates(BytecodeCache):
    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()
