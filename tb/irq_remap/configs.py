"""The irq_remap bench's configurations (``CONFIGS``: RemapParams by name), how they travel
to the cocotb tests (environment), the DUT factory and the record layouts of its ports."""

from __future__ import annotations

from amaranth.lib import data

from model.irq_remap import (
    RemapParams,
)
from tb.common.runner import bench_config_env, read_bench_config

ENV_REPORT = "IRQ_REMAP_REPORT"
ENV_KNOBS = "IRQ_REMAP_KNOBS"

# The configuration of the cocotb benches (and the main amaranth.sim one). A small
# fault_depth makes the fault FIFO overflow under spoof bursts.
BENCH_PARAMS = RemapParams(n_vfs=4, n_vectors=4, vm_bits=4, guest_vector_bits=8, fault_depth=4)
# A second geometry: counts that are not powers of two leave out-of-range handles.
ODD_PARAMS = RemapParams(n_vfs=3, n_vectors=3, vm_bits=3, guest_vector_bits=6, fault_depth=2)
# Every configuration by name (the one way benches name them).
CONFIGS = {"bench": BENCH_PARAMS, "odd": ODD_PARAMS}

HW_COUNTERS = ("raised_count", "delivered_count", "blocked_count", "coalesced_count",
               "fault_dropped", "ctl_errors")


def build_remap(params: RemapParams = BENCH_PARAMS, fault_inject: str | None = None):
    from hdl.irq_remap import IrqRemap
    return IrqRemap(params.n_vfs, params.n_vectors, vm_bits=params.vm_bits,
                    guest_vector_bits=params.guest_vector_bits,
                    fault_depth=params.fault_depth, _fault_inject=fault_inject)


def params_to_env(params: RemapParams) -> dict[str, str]:
    return bench_config_env(params.to_dict())


def params_from_env() -> RemapParams:
    """The configuration of the running cocotb test; BENCH_PARAMS when run alone."""
    return RemapParams(**read_bench_config("tb/irq_remap/test_irq_remap.py",
                                           BENCH_PARAMS.to_dict()))


def layouts(params: RemapParams) -> dict[str, data.Layout]:
    from hdl.irq_remap import (
        control_layout,
        delivery_layout,
        entry_layout,
        fault_layout,
        raise_layout,
    )
    return {"irq_in": raise_layout(params), "irq_out": delivery_layout(params),
            "ctl": control_layout(params), "fault": fault_layout(params),
            "rd_entry": entry_layout(params)}


def pack(layout: data.Layout, values: dict) -> int:
    word = 0
    for name, fld in layout:
        word |= (int(values.get(name, 0)) & ((1 << fld.width) - 1)) << fld.offset
    return word


def unpack(layout: data.Layout, word: int) -> dict[str, int]:
    return {name: word >> fld.offset & ((1 << fld.width) - 1) for name, fld in layout}
