"""Cost measurements of a model: size, compute, latency, throughput and memory."""
