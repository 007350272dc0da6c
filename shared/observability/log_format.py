"""How log lines look: one JSON object per line, or the plain text a person reads.

LOG_FORMAT picks (`CommonSettings.log_format`); unset, a terminal gets text and anything else
(a file, a pipe, a log collector) JSON. Both show the ids `shared.observability.log_context` bound,
so `grep album_id=<id>` works on the text and `jq 'select(.album_id=="<id>")'` on the JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from shared.observability import log_context

Format = Literal["json", "text"]


def choose(setting: Format | None) -> Format:
    """The setting, or text on a terminal and JSON elsewhere."""
    if setting is not None:
        return setting
    return "text" if sys.stderr.isatty() else "json"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The bound ids, and those a call passed itself (`extra={"album_id": ...}`) on top."""
    fields = dict(log_context.current())
    for name in log_context.FIELDS:
        if (value := getattr(record, name, None)) is not None:
            fields[name] = value
    return {name: fields[name] for name in log_context.FIELDS if name in fields}


class JsonFormatter(logging.Formatter):
    """ts, level, logger, service, msg, the ids, and an exception as one string field."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self._service,
            "msg": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The plain line, then the ids as `name=value` (grep-able)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        ids = " ".join(f"{name}={value}" for name, value in fields_of(record).items())
        line = super().formatMessage(record)
        return f"{line} [{ids}]" if ids else line


def formatter(fmt: Format, service: str) -> logging.Formatter:
    return JsonFormatter(service) if fmt == "json" else TextFormatter()
