"""Data: the data sets in their published layouts, the paper's augmentations, and the loaders."""
