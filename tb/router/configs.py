"""Benches of hdl/router.py: the elaboration parameters shared by the pytest entries (which
build the Verilog or the amaranth.sim model) and the cocotb tests (which read them back from
the environment). The cycle-level bench itself is ``tb.router.bench``; the cocotb/pyuvm
tests are ``tb.router.test_router``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hdl.formats import bits_for
from tb.common.runner import BenchConfig


@dataclass(frozen=True)
class RouterConfig(BenchConfig):
    ENTRY = "tb/router/test_router.py"
    n_vfs: int
    slots_per_device: tuple[int, ...]
    vf_bits: int
    addr_bits: int = 6
    tag_bits: int = 4
    queue_depth: int = 4
    max_in_flight: int = 3

    def __post_init__(self):
        object.__setattr__(self, "slots_per_device", tuple(self.slots_per_device))

    @property
    def n_devices(self) -> int:
        return len(self.slots_per_device)

    @property
    def index_bits(self) -> int:
        return bits_for(self.n_vfs)

    def kwargs(self) -> dict:
        d = asdict(self)
        d.pop("n_vfs")
        d["n_devices"] = self.n_devices
        return d

    def build(self):
        """The DUT of the benches: the router behind the quiesce harness."""
        from tb.router.harness import RouterHarness
        return RouterHarness(self.n_vfs, **self.kwargs())


# Two devices as in the system (a host with more slots, an offload device with few), six VFs
# in 4-bit ids (ids 6..15 are unknown); and three devices with a power-of-two VF count,
# shallow queues and one in-flight request per VF, so backpressure and the in-flight rule
# bite often.
CONFIGS = {
    "two_devices": RouterConfig(n_vfs=6, slots_per_device=(4, 2), vf_bits=4),
    "three_devices": RouterConfig(n_vfs=8, slots_per_device=(8, 2, 1), vf_bits=4,
                                  tag_bits=3, queue_depth=2, max_in_flight=1),
}
