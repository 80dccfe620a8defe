"""The bench of hdl/mig_engine.py: re-exports tb/mig_engine/configs.py
(the tests: tb/mig_engine/test_mig_engine.py)."""

from .configs import CONFIGS, build, from_env, to_env

__all__ = ["CONFIGS", "build", "from_env", "to_env"]
