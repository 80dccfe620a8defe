"""cocotb benches of the system top that measure figures (``python -m tb.bench``)."""
