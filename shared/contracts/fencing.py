"""The fencing number an upload message carries: which attempt of its image it follows.

The store numbers an image's attempts (`Image.attempts`). Every upload message says which
attempt it comes after (0 for the first message, n for attempt n's retry copy). A delivery
whose number is older than the image's latest attempt is a stale duplicate: another copy
already started a newer attempt, so it is acked instead of starting a second retry chain
(the sweeper recovers a chain that was really lost). A message without the header (written
before fencing existed) is never stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shared.contracts.outgoing import Outgoing

FENCE_HEADER = "album-fence"


def fence_of(headers: Mapping[str, Any]) -> int | None:
    """The fencing number a delivery carries, or None (none, or not a number)."""
    value = headers.get(FENCE_HEADER)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def superseded(
    fence: int | None, attempts: int, uploading: bool, attempt_fence: int | None
) -> bool:
    """Whether a message carrying `fence` follows an older attempt than its image's latest
    (`attempts`): another copy took over. A copy of the message that started the latest attempt
    is not, while that attempt is `uploading` with no outcome: the broker redelivered it, or it
    waited out the attempt's window; it is the only copy left. Without a fence, never."""
    if fence is None or fence >= attempts:
        return False
    return not (uploading and fence == attempt_fence)


def fenced(message: Outgoing, fence: int) -> Outgoing:
    """`message` carrying `fence` (a retry copy follows the attempt that made it)."""
    return replace(message, headers={**message.headers, FENCE_HEADER: fence})
