"""lmforge training: configuration, data loading from token bins, the training loop in one process or a torchrun
job (train/parallel.py), checkpoints that reshard, generation."""
