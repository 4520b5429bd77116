"""The public surface of the ``router`` package."""

from __future__ import annotations

import router


def test_public_names_are_pinned() -> None:
    """``router.__all__`` lists exactly the supported public names."""
    expected = {
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
    }

    assert set(router.__all__) == expected
    assert len(router.__all__) == len(expected)


def test_every_public_name_exists() -> None:
    """Every name in ``router.__all__`` is importable from the package."""
    missing = [name for name in router.__all__ if not hasattr(router, name)]

    assert missing == []


def test_reasons_are_the_spec_values() -> None:
    """``Reason`` holds exactly the ``x-mcp-reason`` values of the SPEC."""
    values = {reason.value for reason in router.Reason}

    assert values == {
        "malformed", "unknown_type", "schema_invalid", "unauthorized",
        "rate_limited", "unroutable", "retries_exhausted", "no_consumer",
        "delivery_limit",
        "handler_failed", "unhandled",
    }
