"""The process's open-file limit, sized for the connections the API holds open.

Every connection is a file descriptor, as are the store's pool, the broker's connection, S3's
and the files Python has open; at the limit, accept() fails and the server stops taking
anyone. Linux starts a process with a soft limit (often 1024) below its hard limit (often
524288 or more), and an unprivileged process may raise its soft limit up to the hard one.
"""

from __future__ import annotations

import resource

#: Descriptors kept for everything but client connections (the store's pool, the broker, S3,
#: the listening socket, waitress's trigger pipe, logs, imports).
RESERVED = 64


def plan(soft: int, hard: int, connections: int) -> tuple[int, int]:
    """(the soft limit to set, the connections it allows) for `connections` wanted."""
    wanted = connections + RESERVED
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft, connections
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    return ceiling, max(1, min(connections, ceiling - RESERVED))


def fit_connections(connections: int) -> tuple[int, int]:
    """Raise the soft open-file limit for `connections` (within the hard limit); (the soft
    limit now, the connections it allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, allowed = plan(soft, hard, connections)
    if new_soft != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return new_soft, allowed
