"""The bench of hdl/link.py: re-exports tb/link/harness.py
(the tests: tb/link/test_link.py)."""

from .harness import (
    CONFIGS,
    PORTS,
    LinkPair,
    config_env,
    config_from_env,
    link_pair,
)

__all__ = [
    "CONFIGS",
    "LinkPair",
    "PORTS",
    "config_env",
    "config_from_env",
    "link_pair",
]
