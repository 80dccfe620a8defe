"""``make fpga``: board builds of the self-testing system with amaranth-boards and YoWASP."""
