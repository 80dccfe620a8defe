"""cocotb bench of the migration engines (hdl/mig_engine.py) on the system top.

The elaboration parameters live here, shared by the pytest entry
(tb/mig_engine/test_mig_engine.py, which builds one System per configuration) and the cocotb
tests (which read the configuration back from ``VFMIG_BENCH_CONFIG``).  Each capability flag
set is its own configuration, so its own Verilog and build.
"""

from __future__ import annotations

from model.config import SystemConfig
from model.state import ImageLayout
from model.vfio import ALL_FLAGS, MigrationFlags
from tb.common.runner import bench_config_env, read_bench_config

_LAYOUT = ImageLayout(csr_words=4, msix_vectors=2, mem_words=32, block_words=8)


def _small(flags: MigrationFlags) -> SystemConfig:
    # One offload slot, so one migrated VF fills the offload device (MIG_REJECT test).
    return SystemConfig(n_vfs=2, host_slots=2, offload_slots=1, layout=_LAYOUT,
                        chunk_words=16, flags=flags)


CONFIGS: dict[str, SystemConfig] = {
    "all_flags": _small(ALL_FLAGS),
    "stop_copy_only": _small(MigrationFlags.STOP_COPY),
    "no_p2p": _small(MigrationFlags.STOP_COPY | MigrationFlags.PRE_COPY),
}


def to_env(config: SystemConfig) -> dict[str, str]:
    return bench_config_env(config.to_dict())


def from_env() -> SystemConfig:
    d = read_bench_config("tb/mig_engine/test_mig_engine.py")
    d["layout"] = ImageLayout(**d["layout"])
    d["flags"] = MigrationFlags(d["flags"])
    return SystemConfig(**d)


def build(config: SystemConfig):
    from hdl.system import System
    return System(config)
