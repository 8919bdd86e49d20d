"""The applications main.py dispatches to: train, evaluate a checkpoint, predict, compare."""
