"""The bench of hdl/migproto.py: re-exports tb/migproto/harness.py
(the tests: tb/migproto/test_migproto.py)."""

from .harness import (
    HARNESS_PARAMETERS,
    MigProtoHarness,
    build_harness,
    random_message,
    random_valid,
)

__all__ = [
    "HARNESS_PARAMETERS",
    "MigProtoHarness",
    "build_harness",
    "random_message",
    "random_valid",
]
