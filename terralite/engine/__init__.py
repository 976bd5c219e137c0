"""The training and evaluation engine: one trainer for baselines, searched networks, fine-tunes and distillation."""
