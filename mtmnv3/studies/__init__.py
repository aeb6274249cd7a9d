"""Studies layer: latency tables, split search, quantization, robustness, tracker calibration."""
