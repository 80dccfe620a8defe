"""Small pyuvm pieces shared by the benches."""

from pyuvm import ConfigDB, uvm_driver


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
