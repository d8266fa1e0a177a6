"""Task losses. Each returns named scalar components plus ``total`` and ``num_pos`` counters."""
