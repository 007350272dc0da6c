"""Which exceptions mean a dependency is away (an outage), not that the message or the code is
wrong. The consumer runtime (`shared.policies.fate`) lets a message wait out an outage without
spending its attempts; any other unexpected exception is a bug and spends them, so it ends as a dead
letter with its reason instead of circling the delay tiers for ever.
"""

from __future__ import annotations

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.broker.errors import BrokerError

#: The store unreachable or dropped (OperationalError covers refused and reset connections,
#: server shutdowns and statement timeouts), its pool exhausted, the broker away, a socket
#: error on the way to either.
_OUTAGES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    BrokerError,
    ConnectionError,
    TimeoutError,
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, _OUTAGES)
