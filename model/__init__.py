"""Pure-Python golden models and formats for vfmig: no cocotb, no amaranth.

Everything the HDL and the testbenches agree on (state-image layout, VFIO states,
message encodings, register map) is defined here once.
"""
