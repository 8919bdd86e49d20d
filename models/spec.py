"""What it takes to rebuild a trained model and feed it as it was trained: saved with every checkpoint.

`build_model(**spec.to_dict())` rebuilds the network with random weights, into which a checkpoint's state dict
then loads (utils.engine.checkpoint.load_model); the input fields say how its images were prepared: the data
set (its transforms and label set), the scale, the network input sizes of training and evaluation, and the
normalisation.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    encoder_name: str = "resnet34"
    classes: tuple[str, ...] = ()  # class names; the last is unlabelled / background and left out of mIoU
    att_depth: int | None = 2  # None: the plain SMP model
    patch_size: int = 10
    in_channels: int = 3  # image channels (a checkpoint saved before this field was kept had 3)
    # How its inputs were prepared.
    dataset: str | None = None
    # What the data set's pipeline depends on beyond its name (utils.data.datasets.dataset_class): CamVid's frame
    # size found, a folder data set's classes file. JSON; empty for the data sets that need nothing.
    dataset_params: dict | None = None
    scale: float = 1.0
    train_size: tuple[int, int] | None = None  # (h, w) network input while training
    eval_size: tuple[int, int] | None = None  # (h, w) network input while evaluating
    mean: tuple[float, ...] | None = None  # on a 0..1 pixel scale, one per channel; None: ImageNet's per channel
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        for name in ("classes", "train_size", "eval_size", "mean", "std"):  # JSON gives lists: keep it hashable
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        for name, imagenet in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
            if getattr(self, name) is None and isinstance(self.in_channels, int):
                object.__setattr__(self, name, per_channel(imagenet, self.in_channels))

    def __hash__(self) -> int:  # dataset_params is a dict: hash the JSON form, as equal specs have equal ones
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict:
        """JSON-able (lists for tuples): what checkpoints and config.json hold."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model spec fields {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


def per_channel(values, channels: int) -> tuple[float, ...]:
    """An RGB encoder's per-channel (mean or std) for `channels` input channels, as SMP (and timm) adapt the
    pretrained first convolution: 1 channel sums the RGB filters (the input stands for R = G = B: the average),
    N channels reuse the RGB filters in turn (channel i is RGB channel i % 3)."""
    values = tuple(float(value) for value in values)
    if channels == len(values):
        return values
    if channels == 1:
        return (sum(values) / len(values),)
    return tuple(values[i % len(values)] for i in range(channels))


def variant_name(att_depth: int | None) -> str:
    """The model's short name in run folders: "baseline" for the plain SMP model, else afmaD."""
    return "baseline" if att_depth is None else f"afma{att_depth}"


class SettingError(ValueError):
    """A model setting that cannot work. `option` is the keyword (the command line maps it to its flag)."""

    def __init__(self, option: str, value, reason: str, hint: str = ""):
        self.option, self.value, self.reason, self.hint = option, value, reason, hint
        super().__init__(f"{option}={value!r} is not valid{hint}: {reason}")
