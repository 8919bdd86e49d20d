"""Prepare the AFMA data sets: from the official releases to the folder layouts main.py reads.

    python tools/prepare_data.py camvid --source PATH --out data/CamVid   # convert (PATH: the two zips or folders)
    python tools/prepare_data.py lits --source PATH --out data/LiTS       # slice NIfTI volumes into .npy
    python tools/prepare_data.py birds --source PATH                      # check (and --out: assemble)
    python tools/prepare_data.py skinlesion --source PATH --download --out data/ISIC2018
    python tools/prepare_data.py cityscapes --source PATH                 # check, make train-id labels

camvid: the official full-resolution release labels 32 classes by colour; main.py reads the 11 classes + void
of SegNet and the AFMA paper as index PNGs, in the standard 367/101/233 split (tools/camvid_splits/).
lits: LiTS ships 3-D NIfTI volumes; main.py reads 2-D .npy slices. The volumes are split into train/val/test
BY VOLUME (slices of one patient are nearly identical, so a per-slice split would leak test patients into
training). By default only slices that contain liver are kept. Both are this project's own choices: neither
the AFMA paper nor its released code says which slices were used or how the volumes were split. Slices without
liver are about 2/3 of a volume and nearly all background, so they would fill the training set with empty
masks (--all-slices keeps every slice; split.json records the policy, the seed and the split).
birds, skinlesion, cityscapes: the releases already come in the layout main.py reads, so the tool checks a
download against the expected files and counts, assembles the layout with --out when the files are spread
over archives or folders, and creates the Cityscapes train-id labels.

Every problem stops the run with an `error: ...` line that names the file and says what to do (exit status
2). Output is built in a temporary folder beside --out and renamed at the end, so a failed or interrupted
run leaves nothing half-written, and the output is byte-identical from run to run.

The code lives in the package tools/prepare/ (one module per concern and per data set); this script runs it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from tools.prepare.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
