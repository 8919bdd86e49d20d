"""Shared fixtures: a tiny copy of the bundled sample and the fast settings for main.py runs."""
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "dataset" / "camvid"
# A main.py run that takes seconds on 2 CPU cores: 64x96 training crops, 96x128 evaluation crops.
FAST = ["--encoder", "resnet18", "--scale", "0.125", "--batch-size", "2", "--workers", "0", "--patch-size", "4",
        "--lr", "1e-3"]


@pytest.fixture
def tiny_camvid(tmp_path):
    """Two images per split of the bundled sample, in a folder the test may break."""
    root = tmp_path / "camvid"
    for split in ("train", "val", "test"):
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
            for file in sorted((SAMPLE / folder).iterdir())[:2]:
                shutil.copy(file, root / folder / file.name)
    return root
