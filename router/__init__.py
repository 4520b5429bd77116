"""mcp-router: a message control plane for RabbitMQ.

Services publish to one ingress exchange; the router validates each message
against a JSON Schema registry kept as files, routes it by type and content,
and dead-letters what it cannot deliver, with the reason.

``Config``, ``load_config``, ``check_config`` and ``Reason`` are resolved on
first use: importing one module of the package (``router.core.pipeline``, a
service's ``router.sdk``) must not load the configuration loader and the
schema-compatibility checker behind it (tests/unit/test_layers.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # for type checkers only: at run time __getattr__ resolves them lazily
    from router.config.configuration import Config, check_config, load_config
    from router.core.reasons import Reason

__version__ = "0.1.0"
_LAZY = {"Config": "router.config.configuration", "check_config": "router.config.configuration",
         "load_config": "router.config.configuration", "Reason": "router.core.reasons"}

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415 - lazy: see the docstring

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'router' has no attribute {name!r}")
