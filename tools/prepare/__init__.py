"""tools/prepare_data.py as a package: one module per concern and per data set.

common (errors, the staged output folder), sources (files and archives), download, camvid, lits,
checks (CUB, ISIC, Cityscapes) and cli (the command line, run by tools/prepare_data.py).
"""
