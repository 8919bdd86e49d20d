"""Export a trained model to ONNX (or a torch.export .pt2): see utils/apps/export.py and docs/export.md.

Usage: python tools/export.py --checkpoint RUN/best.pt [--output FILE] [--format onnx|pt2]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from utils.apps.export import main  # noqa: E402

if __name__ == "__main__":
    main()
