"""mcp-router: a message control plane for RabbitMQ.

Services publish to one ingress exchange; the router validates each message
against a JSON Schema registry kept as files, routes it by type and content,
and dead-letters what it cannot deliver, with the reason.
"""

from router.config.configuration import Config, check_config, load_config
from router.core.outcome import Reason
from router.errors import (
    BrokerUnavailable,
    ConfigError,
    DeliveryFailed,
    Problem,
    Refused,
    RouterError,
    TopologyConflict,
    TransientFailure,
    Unroutable,
)

__version__ = "0.1.0"

__all__ = [
    "BrokerUnavailable",
    "Config",
    "ConfigError",
    "DeliveryFailed",
    "Problem",
    "Reason",
    "Refused",
    "RouterError",
    "TopologyConflict",
    "TransientFailure",
    "Unroutable",
    "__version__",
    "check_config",
    "load_config",
]
