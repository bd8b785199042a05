"""lmforge training: configuration, data loading from token bins, the training loop, checkpoints."""
