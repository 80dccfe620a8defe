"""Small pyuvm pieces shared by the benches."""

from collections import Counter
from collections.abc import Iterable

from pyuvm import (
    ConfigDB,
    uvm_agent,
    uvm_analysis_port,
    uvm_driver,
    uvm_monitor,
    uvm_sequence,
    uvm_sequencer,
)

from tb.common.coverage import Covergroup, covergroup, flush


class BfmDriver(uvm_driver):
    """Hands each sequence item to the bus-functional model found in ConfigDB as "BFM".

    Subclasses say how, in ``async def drive(self, item)``; ``self.bfm`` is the BFM."""

    def build_phase(self):
        self.bfm = ConfigDB().get(self, "", "BFM")

    async def run_phase(self):
        while True:
            item = await self.seq_item_port.get_next_item()
            await self.drive(item)
            self.seq_item_port.item_done()

    async def drive(self, item):
        raise NotImplementedError(f"{type(self).__name__} must define drive(item)")


class BfmMonitor(uvm_monitor):
    """Publishes what the bus-functional model (ConfigDB "BFM") reports.

    ``HOOKS`` maps a BFM callback attribute to the analysis port (``self.<port>``) that
    publishes it: a callback with one argument writes that argument, one with several writes
    them as one tuple (``on_raise(cycle, ev)`` -> ``(cycle, ev)``)."""

    HOOKS: dict[str, str] = {}

    def build_phase(self):
        self.bfm = ConfigDB().get(self, "", "BFM")
        for port in dict.fromkeys(self.HOOKS.values()):
            setattr(self, port, uvm_analysis_port(port, self))

    def connect_phase(self):
        for hook, port in self.HOOKS.items():
            setattr(self.bfm, hook, _publisher(getattr(self, port)))


def _publisher(port):
    def publish(*args):
        port.write(args if len(args) > 1 else args[0])
    return publish


class ItemListSeq(uvm_sequence):
    """Sends one sequence item per element of a fixed list, in order: ``item(element)``,
    by default ``ITEM(element)`` (``ITEM = None`` sends the elements themselves)."""

    ITEM: type | None = None

    def __init__(self, name: str, elements: Iterable):
        super().__init__(name)
        self.elements = list(elements)

    def item(self, element):
        return element if self.ITEM is None else self.ITEM(element)

    async def body(self):
        for element in self.elements:
            item = self.item(element)
            await self.start_item(item)
            await self.finish_item(item)


class SequencedAgent(uvm_agent):
    """An active agent: a sequencer feeding a ``DRIVER``, and a ``MONITOR`` when the
    subclass names one (``self.seqr``, ``self.driver``, ``self.monitor``)."""

    DRIVER: type | None = None
    MONITOR: type | None = None

    def build_phase(self):
        super().build_phase()
        self.seqr = uvm_sequencer("seqr", self)
        self.driver = self.DRIVER("driver", self)
        if self.MONITOR is not None:
            self.monitor = self.MONITOR("monitor", self)

    def connect_phase(self):
        self.driver.seq_item_port.connect(self.seqr.seq_item_export)


class _SampledCounter(Counter):
    """A Counter whose increases are also sampled into a library covergroup, so the
    benches' ``hits[bin] += n`` lines feed the regression's merged coverage unchanged."""

    def __init__(self, group: Covergroup):
        super().__init__()
        self.group = group

    def __setitem__(self, key, value):
        delta = int(value) - self[key]
        if delta > 0:
            self.group.sample(key, delta)
        super().__setitem__(key, value)


class PlannedCoverage:
    """Mixin for coverage collectors: ``PLANNED`` names the bins of the covergroup
    ``COVERGROUP`` (tb/common/coverage.py), a test puts the bins it must hit in ConfigDB as
    "COVERAGE", and ``report_phase`` fails when one never was in this test. Every report
    writes the process's coverage file for the regression to merge."""

    PLANNED: tuple[str, ...] = ()
    COVERGROUP = ""

    def init_bins(self) -> None:
        self.required = ConfigDB().get(self, "", "COVERAGE")
        self.hits: Counter = _SampledCounter(covergroup(self.COVERGROUP, self.PLANNED))

    def report_phase(self):
        self.logger.info("coverage: %s", {b: self.hits[b] for b in self.PLANNED})
        flush()
        missing = [b for b in self.required if not self.hits[b]]
        assert not missing, f"coverage bins never hit: {missing}"
