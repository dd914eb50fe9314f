"""Training: the loop, checkpoints, routing statistics."""
