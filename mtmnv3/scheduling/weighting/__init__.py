"""Task-loss balancing methods (one small file each), registered in LOSS_WEIGHTINGS."""
