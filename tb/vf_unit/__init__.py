"""The bench of hdl/vf_unit.py: re-exports tb/vf_unit/configs.py
(the tests: tb/vf_unit/test_vf_unit.py)."""

from .configs import CONFIGS, VFUnitConfig

__all__ = ["CONFIGS", "VFUnitConfig"]
