"""Configuration: files read once, checked whole, frozen; every parser of every file.

``from router.config import Config, load_config, check_config`` is the public
way in (services and examples use it); the names are resolved on first use so
that importing one parser does not load the whole configuration package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers only: at run time __getattr__ resolves them lazily
    from router.config.configuration import Config, check_config, load_config

__all__ = ["Config", "check_config", "load_config"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from router.config import configuration  # noqa: PLC0415 - lazy: see the docstring

        return getattr(configuration, name)
    raise AttributeError(f"module 'router.config' has no attribute {name!r}")
