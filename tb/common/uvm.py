"""Small pyuvm pieces shared by the benches."""

from collections import Counter

from pyuvm import ConfigDB, uvm_agent, uvm_driver, uvm_sequencer


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


class PlannedCoverage:
    """Mixin for coverage collectors: ``PLANNED`` names the bins, a test puts the bins it
    must hit in ConfigDB as "COVERAGE", and ``report_phase`` fails when one never was."""

    PLANNED: tuple[str, ...] = ()

    def init_bins(self) -> None:
        self.required = ConfigDB().get(self, "", "COVERAGE")
        self.hits: Counter = Counter()

    def report_phase(self):
        self.logger.info("coverage: %s", {b: self.hits[b] for b in self.PLANNED})
        missing = [b for b in self.required if not self.hits[b]]
        assert not missing, f"coverage bins never hit: {missing}"
