"""Per-block latency tables on a named device profile, with SE / hard-swish breakdowns."""
