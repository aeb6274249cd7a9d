"""Runtime layer: export, one session per runtime, frame runners, the per-frame budget, video I/O, the perception loop."""
