"""The engine: the training loop, evaluation, checkpoints, random state, devices and torchrun."""
