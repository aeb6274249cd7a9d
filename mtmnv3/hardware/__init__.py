"""Hardware-aware study: latency tables, stage-split search, quantization."""
