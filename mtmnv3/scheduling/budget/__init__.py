"""Per-frame compute-budget policies, registered in BUDGET_POLICIES."""
