"""The bench of hdl/router.py: re-exports tb/router/configs.py
(the tests: tb/router/test_router.py)."""

from .configs import CONFIGS, RouterConfig

__all__ = ["CONFIGS", "RouterConfig"]
