"""Which characters the user's text may not hold: it goes to Facebook and into emails.

Refused (issue 11): C0 controls and DEL (line breaks and tabs are allowed in multi-line text:
captions and the description; a title is one line), C1 controls (U+0080-U+009F), and the
bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which reorder the
text after them so that what a reader sees is not what was written ("Trojan Source",
CVE-2021-42574). The implicit marks (U+200E, U+200F, U+061C) are kept: they reorder nothing
beyond their neighbours, and right-to-left writers need them (docs/user-text.md).
"""

from __future__ import annotations

import re
import unicodedata

_MULTI_LINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def first_refused(text: str, multi_line: bool = True) -> str | None:
    """Why `text` is refused, naming its first refused character by code point; None if fine."""
    match = (_MULTI_LINE if multi_line else _ONE_LINE).search(text)
    if match is None:
        return None
    char = match.group()
    kind = "a bidi control character" if char >= "\u202a" else "a control character"
    name = unicodedata.name(char, "")
    named = f"U+{ord(char):04X}" + (f" ({name})" if name else "")
    allowed = "line breaks and tabs are fine" if multi_line else "one line, no tabs"
    return f"must not hold {named}, {kind} ({allowed})"
