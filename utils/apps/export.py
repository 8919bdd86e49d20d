"""Export a trained model for inference outside this project: ONNX, or a torch.export program (.pt2).

    python tools/export.py --checkpoint RUN/best.pt                      # RUN/model.onnx
    python tools/export.py --checkpoint RUN/best.pt --output model.onnx
    python tools/export.py --checkpoint RUN/best.pt --format pt2          # RUN/model.pt2 (torch.export.load)

The exported graph maps a normalised image batch `image` (batch, channels, height, width), float32, to the
corrected logits `logits` (batch, classes, height, width): AFMA's attention is not an output. Batch, height and
width are dynamic; height and width must be multiples of the model's size divisor and at least the smallest
size the export accepts (both are printed, and docs/export.md says how to pad to them). The graph is the
plain path of models/afma.py: `AFMA` runs it whenever torch.export traces, so the §4 kernels never reach it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export import Dim

from utils.engine.checkpoint import load_model
from utils.errors import AFMAError, UsageError
from utils.files import write_atomic

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}


class CorrectedLogits(nn.Module):
    """The model's corrected logits alone: what inference needs, as one tensor an exporter can name."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image)[0]


def size_range(model) -> tuple[int, int]:
    """(divisor, smallest): the exported height and width are multiples of `divisor`, at least `smallest`.

    Twice the smallest size the eager model takes: torch.export fixes a size of 1 into the graph, so every grid of
    whole patches (image and feature map) must hold at least two patches along each axis for the graph to be general.
    """
    return model.size_divisor, 2 * model.min_size


def example_and_shapes(model, channels: int = 3) -> tuple[Tensor, dict]:
    """An example input and the dynamic shapes for torch.export.

    The example has a batch of 2 and unequal height and width: torch.export fixes a size of 1 into the graph and may
    tie equal sizes together; exported from a batch of 1 with the batch merely declared free, an ONNX model would
    run at batch 1 alone.
    """
    divisor, smallest = size_range(model)
    blocks = smallest // divisor
    example = torch.randn(2, channels, smallest, smallest + divisor)
    height, width = Dim("height_blocks", min=blocks), Dim("width_blocks", min=blocks)
    return example, {"image": {0: Dim("batch", min=1), 2: divisor * height, 3: divisor * width}}


def export_program(model: nn.Module) -> torch.export.ExportedProgram:
    """torch.export.export of the model's corrected logits in eval mode, dynamic batch, height and width."""
    wrapper = CorrectedLogits(model).eval()
    example, shapes = example_and_shapes(model, input_channels(model))
    with torch.no_grad():
        return torch.export.export(wrapper, (example,), dynamic_shapes=shapes)


def export_onnx(model: nn.Module):
    """The ONNX program (torch.onnx's dynamo exporter, from `export_program`): input `image`, output `logits`."""
    return torch.onnx.export(export_program(model), dynamo=True, input_names=["image"], output_names=["logits"],
                             verbose=False)


def input_channels(model) -> int:
    """The image channels the network's first convolution takes."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


def check_onnx_modules() -> None:
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    if missing:
        raise UsageError(f"--format onnx needs the package(s) {', '.join(missing)}: pip install -r "
                         f"requirements-dev.txt (or --format pt2, which needs PyTorch alone)")


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def output_path(checkpoint: Path, output: Path | None, form: str) -> Path:
    path = output or Path(checkpoint).parent / f"model{FORMATS[form]}"
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder: give a file name, e.g. {path / ('model' + FORMATS[form])}")
    if not path.parent.is_dir():
        raise UsageError(f"--output {path}: the folder {path.parent} does not exist; create it or choose another")
    return path


def export(checkpoint: Path, output: Path | None = None, form: str = "onnx") -> tuple[Path, nn.Module]:
    """Write the checkpoint's model as `form` to `output` (default: beside the checkpoint), atomically; return the
    path and the model."""
    if form == "onnx":
        check_onnx_modules()
    path = output_path(checkpoint, output, form)
    model, _ = load_model(checkpoint)
    model.eval()
    if form == "pt2":
        program = export_program(model)
        write_atomic(path, lambda file: torch.export.save(program, file))
    else:
        write_atomic(path, export_onnx(model).model_proto.SerializeToString())
    return path, model


def describe(path: Path, model) -> str:
    """One line: what the exported file takes and gives (docs/export.md says how to prepare it)."""
    divisor, smallest = size_range(model)
    spec = model.spec
    return (f"wrote {path}: input 'image' (batch, {input_channels(model)}, height, width) float32, the image scaled by "
            f"{spec.scale} and normalised as (pixel / 255 - mean) / std with mean {list(spec.mean)} and std "
            f"{list(spec.std)}, zero-padded to a height and width that are multiples of {divisor}, at least {smallest}; "
            f"output 'logits' (batch, {model.classes}, height, width)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a best.pt or last.pt written by main.py")
    parser.add_argument("--output", type=Path, help="the file to write (default: model.onnx or model.pt2 beside "
                                                    "the checkpoint)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx", dest="form")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    try:
        path, model = export(args.checkpoint, args.output, args.form)
    except AFMAError as error:
        sys.exit(f"error: {error}")
    print(describe(path, model))
    return path
