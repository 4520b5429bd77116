"""The client side for services on mcp-router: publish typed messages, handle routed ones.

::

    from router.sdk import Context, InMemoryIdempotency, Service, ServicePublisher

    publisher = await ServicePublisher.open(connection, "mcp.ingress")
    await publisher.publish("OrderCreated", {"order_id": ...}, version=2)

    service = Service("billing", queue="billing.orders", registry=config.registry,
                      idempotency=InMemoryIdempotency())

    @service.handler("OrderCreated", versions=[1, 2])
    async def on_created(order: dict, ctx: Context) -> None: ...

    await service.run(amqp_url, stop)

Modules: ``publisher`` (to the ingress, confirmed and traced), ``handlers``
(dispatch by type and version, pure), ``attempts`` (the retry ladder, pure),
``delivery`` (one delivery as values, pure), ``idempotency`` (claims on
message ids, in memory or Redis); the shell: ``links`` (the broker
connections and channels), ``queues`` (checked and declared at start),
``consumer`` (handle and settle each delivery), ``parking`` (park or
dead-letter what failed), ``announcer`` (discovery announcements, heartbeats,
pings), ``service`` (the ``Service`` object and its lifetime).  The discovery protocol's bodies are
``router.discovery.registry``'s, shared with the router.  ``sealed`` seals sensitive fields
before publishing and opens them for handlers (``keyring=``, ``keyring_of``).
"""

from router.discovery.registry import CONTROL_EXCHANGE, Announcement
from router.sdk.handlers import Context, Handler
from router.sdk.idempotency import Idempotency, InMemoryIdempotency, RedisIdempotency
from router.sdk.publisher import InvalidMessage, ServicePublisher
from router.sdk.sealed import keyring_of
from router.sdk.service import PermanentError, Service

__all__ = [
    "CONTROL_EXCHANGE",
    "Announcement",
    "Context",
    "Handler",
    "Idempotency",
    "InMemoryIdempotency",
    "InvalidMessage",
    "PermanentError",
    "RedisIdempotency",
    "Service",
    "ServicePublisher",
    "keyring_of",
]
