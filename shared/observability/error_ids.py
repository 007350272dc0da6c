"""Error ids: what a user sees of a failure we cannot put in plain words (issue 11).

An exception's text (a Python message, a botocore or requests string, a SQL error) names
hosts, queries and internals: it goes to the log in full, under a short random id, and the
user sees a plain reason with that id, which support finds in the logs with `grep`.
"""

from __future__ import annotations

import logging
import secrets


def new() -> str:
    """A short random id (8 hex digits): unique enough to find one failure in the logs."""
    return secrets.token_hex(4)


def logged(log: logging.Logger, what: str, exc: BaseException, level: int = logging.WARNING) -> str:
    """Log `what` with `exc` in full (its traceback too) under a new error id; the id."""
    error_id = new()
    log.log(
        level, "%s [error id %s]: %s: %s", what, error_id, type(exc).__name__, exc, exc_info=exc
    )
    return error_id


def plain(
    reason: str, log: logging.Logger, exc: BaseException, level: int = logging.WARNING
) -> str:
    """`reason` for the user with the error id under which `exc` was logged."""
    return f"{reason} (error id {logged(log, reason, exc, level)})"


#: The reason shown for a bug of ours, with its error id.
INTERNAL = "something went wrong on our side"
