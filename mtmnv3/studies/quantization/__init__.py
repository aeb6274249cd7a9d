"""int8 quantization study: recipes, PTQ, PT2E, QAT and per-layer quantization error."""
