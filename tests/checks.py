"""Assertions the simulator-free tests share."""

from __future__ import annotations

import pytest


def assert_refused(error: type[Exception], message: str, make, *args, **kwargs) -> None:
    """``make(*args, **kwargs)`` raises ``error`` whose text is exactly ``message`` (the one
    line a constructor's parameter check gives)."""
    with pytest.raises(error) as info:
        make(*args, **kwargs)
    assert str(info.value) == message
