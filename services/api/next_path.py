"""Where sign-in sends the browser afterwards: a path of this site, or the albums page.

`next` comes from the address bar, so anyone can write it. Browsers forgive a lot in a
Location header: they drop tabs and line breaks (`next=/%09/evil.example` arrives as
`/<tab>/evil.example`, which a browser follows to `//evil.example`, another host), they read a
backslash as a slash, and a CR/LF would split the header (werkzeug refuses it: that was a 500).
So the target is accepted only when it is plainly an absolute path with no control characters,
whitespace or backslashes (written plainly or percent-encoded), no scheme and no host, and it
is sent on as parsed.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

#: Control characters (C0, DEL, C1), whitespace of any kind and backslashes.
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\\\s]")


def same_site_path(target: str | None) -> str | None:
    """The target as a path (with its query) of this site, or None if it is anything else."""
    if not target or not all(_plain_path(form) for form in (target, unquote(target))):
        return None  # percent-encoded too: a proxy or a browser may decode it on the way
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    return urlunsplit(("", "", parts.path, parts.query, ""))


def _plain_path(target: str) -> bool:
    # "//host" is scheme-relative: another site.
    return target.startswith("/") and not target.startswith("//") and not _UNSAFE.search(target)
