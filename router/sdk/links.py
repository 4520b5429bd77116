"""The service's broker links: intake on one connection, publishing on another.

The implementation is the broker shell's (``router.broker.servicelinks``): the
SDK never talks to the client library itself.  What a lost channel or
connection raises is ``router.errors.BrokerFailure`` (the broker requeues what
was unacked); a publish that was not confirmed raises ``DeliveryFailed``.
"""

from __future__ import annotations

from router.broker.servicelinks import Links

__all__ = ["Links"]
