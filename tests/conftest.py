"""Fixtures every suite shares (unit, integration, behaviour)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the receiver's protobuf and HTTP parts load only for tests that ask
    from tests.integration.otlp import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real OTLP/HTTP receiver on a free port, for spans exported by what is tested."""
    from tests.integration.otlp import Receiver  # noqa: PLC0415 - see TYPE_CHECKING above

    r = Receiver().start()
    yield r
    r.stop()
