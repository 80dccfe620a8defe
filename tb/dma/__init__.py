"""cocotb testbench of the state DMA (hdl/dma.py) behind a VF-unit-like memory."""
