"""cocotb + pyuvm bench of the AXI4-Lite control-plane slave (hdl/csr.py); see test_csr.py."""
