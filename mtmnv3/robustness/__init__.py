"""Robustness study: the shift suite (corruptions), adversarial attacks, robust training."""
