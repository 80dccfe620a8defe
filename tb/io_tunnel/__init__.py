"""The bench of hdl/io_tunnel.py: re-exports tb/io_tunnel/harness.py
(the tests: tb/io_tunnel/test_io_tunnel.py)."""

from .harness import (
    CONFIGS,
    DIRECTIONS,
    WIRES,
    TunnelPair,
    config_env,
    config_from_env,
    record_layouts,
    tunnel_pair,
)

__all__ = [
    "DIRECTIONS",
    "CONFIGS",
    "TunnelPair",
    "WIRES",
    "config_env",
    "config_from_env",
    "record_layouts",
    "tunnel_pair",
]
