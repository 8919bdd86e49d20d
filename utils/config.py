"""The run's configuration: settings in layers, checked once, frozen.

A setting's value comes from the first of these that gives one: the command line's flag, the run being
resumed (or the checkpoint being evaluated), the preset (`--preset paper-released`), the constants at the top of
main.py. `RunConfig.sources` records which, and config.json keeps it beside the values.
`make_config` checks every value (naming the flag that fixes it) and returns a frozen `RunConfig`; nothing
mutates it afterwards: a derived value is a new one, made with `dataclasses.replace`.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from models import ARCHITECTURES, ATTENTION_DEPTHS, ModelSpec, SettingError, check_spec, check_weights, normalisation, \
    per_channel, variant_name
from utils.data.datasets import DATASET_TYPES, dataset_class
from utils.data.transforms import network_size
from utils.engine import distributed
from utils.errors import UsageError
from utils.losses import PAPER_LOSS_WEIGHTS

# The authors' recipe, in two versions. Their main.py builds MultiStepLR(milestones 400, 500, 700, 800, 900,
# gamma 0.5) but never calls scheduler.step(), so it trains at 1e-4 throughout; which of the two the paper's tables
# used is not known. `paper-released` is what the released code runs, `paper-declared` the schedule it declares.
# A preset's batch_size is the global batch: under torchrun it is divided among the processes (`make_config`).
PAPER = dict(epochs=1000, lr=1e-4, batch_size=4, encoder_weights="imagenet", scale=1.0)
PRESETS = {
    "paper-released": PAPER | dict(milestones=""),
    "paper-declared": PAPER | dict(milestones="400,500,700,800,900"),
}
LR_GAMMA = 0.5  # the factor at each milestone (the released code's)
SEED_MAX = 2**32 - 1  # NumPy's and the loaders' seeds are 32-bit; a larger --seed overflowed in torch.manual_seed


@dataclass(frozen=True)
class Setting:
    """One setting (a row of SETTINGS; how to add one: the comment above it): its flag is --name-with-dashes.

    `resumable`: a resumed run may change it (where its data is and how it runs, not what it computes).
    `uses`: the actions that read it; evaluating a --checkpoint and --predict refuse a flag they would ignore.
    `parse` and `show`: for a setting whose flag is text for another value (--att-depth off is None), the one
    conversion each way, used wherever the setting is read or written back as a flag.
    """
    name: str
    type: type  # how the flag's value is read; bool: --name / --no-name
    help: str
    resumable: bool = False
    uses: tuple[str, ...] = ("train",)
    parse: Callable[[Any], Any] | None = None  # the flag's text -> the value the run uses (None: the text itself)
    show: Callable[[Any], Any] | None = None  # that value -> the flag's text (None: the value itself)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def value(self, text):
        """What the run uses for this flag's text (a UsageError naming the flag if it is not valid)."""
        return text if self.parse is None else self.parse(text)

    def text(self, value):
        """The flag's text for a value the run uses: `value(text(v)) == v`."""
        return value if self.show is None else self.show(value)


def parse_depth(value) -> int | None:
    if str(value).lower() in ("off", "none"):
        return None
    if str(value) not in tuple(map(str, ATTENTION_DEPTHS)):
        raise UsageError(f"--att-depth {value!r} is not valid: choose one of "
                         f"{', '.join(map(str, ATTENTION_DEPTHS))}, or off (the plain baseline)")
    return int(value)


def depth_text(depth: int | None) -> str:
    return "off" if depth is None else str(depth)


def size_parser(flag: str) -> Callable[[Any], tuple[int, int] | None]:
    """--train-size / --eval-size: HxW, the crop's height and width in pixels at --scale 1 (a classes file's
    [h, w]), or empty: the data set's own (None)."""
    def parse(value) -> tuple[int, int] | None:
        text = str(value).strip().lower()
        if text in ("", "none"):
            return None
        match = re.fullmatch(r"(\d+)\s*x\s*(\d+)", text)
        if not match or 0 in (size := (int(match[1]), int(match[2]))):
            raise UsageError(f"{flag} {value!r} is not valid: give the crop as HxW, its height and width in pixels "
                             f"at --scale 1, two positive integers, e.g. 480x640 (empty: the data set's own)")
        return size
    return parse


def size_text(size: tuple[int, int] | None) -> str:
    return "" if size is None else f"{size[0]}x{size[1]}"


TRAIN, EVALUATE, PREDICT = ("train",), ("train", "evaluate"), ("train", "evaluate", "predict")
# The settings, in the order of main.py's constants and of --help. Adding a setting (said here alone; main.py and
# `Setting` point here):
# 1. its line here: name, type, help, whether a resume may change it, the actions that use it (its flag follows);
# 2. its default, and its only one: the constant of its name in capitals at the top of main.py;
# 3. its field in RunConfig, without a default (what config.json records; make_config gives it), and its entry in
#    SAVED_BEFORE: the value runs saved before it existed used, so that their config.json still loads;
# 4. its check in make_config, and its use.
SETTINGS = (
    Setting("dataset", str, ", ".join(DATASET_TYPES) + " (your own images and masks: docs/datasets.md)",
            uses=EVALUATE),
    Setting("data_dir", str, "the data set's root folder", resumable=True, uses=EVALUATE),
    Setting("arch", str, ", ".join(ARCHITECTURES)),
    Setting("encoder", str, "an SMP encoder name, or tu-<timm model>"),
    Setting("encoder_weights", str, '"imagenet", another SMP weights tag, or "none" (random initialisation)'),
    Setting("allow_random_init", bool, "fall back to random initialisation when the weights cannot be fetched"),
    Setting("in_channels", int, "image channels: 3 RGB, 1 grey, 4 RGBA (PNG or TIFF); LiTS slices: any, replicated"),
    Setting("mean", str, "the input mean per channel, on a 0..1 pixel scale, comma-separated; auto: the encoder "
            "weights' (ImageNet's), one per channel"),
    Setting("std", str, "the input standard deviation per channel, like --mean; auto: the encoder weights'"),
    Setting("att_depth", str, f"the encoder depth AFMA attends to, {', '.join(map(str, ATTENTION_DEPTHS))}, or off "
            "(the plain SMP baseline); with --compare, one or several, e.g. 1,2,3,4", parse=parse_depth,
            show=depth_text),
    Setting("patch_size", int, "AFMA patch size p"),
    Setting("train_size", str, "--dataset folder: the training crop, HxW (height x width) at --scale 1, over "
            "classes.json's train_size; empty: the data set's own", parse=size_parser("--train-size"), show=size_text),
    Setting("eval_size", str, "--dataset folder: the evaluation crop, HxW at --scale 1, over classes.json's "
            "eval_size; empty: the data set's own", parse=size_parser("--eval-size"), show=size_text),
    Setting("epochs", int, "training epochs; with --resume, train the run on up to this epoch", resumable=True),
    Setting("batch_size", int, "images per step (per process)", uses=EVALUATE),
    Setting("lr", float, "Adam learning rate"),
    Setting("milestones", str, "comma-separated epochs at which the learning rate halves"),
    Setting("ce_weight", float, "the loss's weight of the NLL term (AFMA models; the baseline's loss is the NLL "
            "alone)", uses=EVALUATE),
    Setting("mse_weight", float, "the loss's weight of the attention MSE term", uses=EVALUATE),
    Setting("scale", float, "image scale (1.0 = the paper's resolution); with --checkpoint, evaluate at this scale",
            uses=PREDICT),
    Setting("device", str, "auto, cpu, cuda, cuda:N", resumable=True, uses=PREDICT),
    Setting("amp", bool, "mixed precision: bf16 where supported, else fp16 with a gradient scaler", uses=EVALUATE),
    Setting("tf32", bool, "CUDA: TF32 tensor cores for float32 matrix products and convolutions", resumable=True,
            uses=EVALUATE),
    Setting("compile", bool, "torch.compile the model", resumable=True),
    Setting("seed", int, "seeds Python, NumPy, torch, the shuffling and every sample's augmentation", uses=EVALUATE),
    Setting("deterministic", bool, "PyTorch's deterministic algorithms (CUDA)", uses=EVALUATE),
    Setting("workers", str, "data-loader processes, or auto", resumable=True, uses=EVALUATE),
    Setting("save_every", float, "minutes between writes of last.pt (0: every epoch)", resumable=True),
    Setting("output_dir", str, "the run folder (empty: a new one under runs/)", uses=PREDICT),
    Setting("tile", int, "--predict in overlapping windows of this many network pixels (0: the whole image, in "
            "windows above 2048x2048)", resumable=True, uses=("predict",)),
    Setting("tile_overlap", int, "with --tile: pixels neighbouring windows share (their logits are averaged)",
            resumable=True, uses=("predict",)),
)
SETTING = {s.name: s for s in SETTINGS}
# What a resumed run may change: where its data is and how it runs, not what it computes.
RESUMABLE = tuple(s.name for s in SETTINGS if s.resumable)
# The model keywords whose setting has another name; the flag of every setting and model keyword, for messages.
MODEL_KEYWORDS = {"encoder_name": "encoder", "classes": "dataset"}
FLAGS = {s.name: s.flag for s in SETTINGS} | {key: SETTING[name].flag for key, name in MODEL_KEYWORDS.items()}
# The settings a --checkpoint's model fixes: a flag may repeat them (checked), not change them.
CHECKPOINT_MODEL = ("arch", "encoder", "att_depth", "patch_size", "in_channels")


def setting_defaults(constants: dict) -> dict:
    """Each setting's default, from main.py's constants (`globals()`): one per setting, named in capitals."""
    missing = [s.name.upper() for s in SETTINGS if s.name.upper() not in constants]
    if missing:
        raise NameError(f"main.py has no constant {', '.join(missing)}: every setting in utils/config.py SETTINGS "
                        f"needs its default at the top of main.py")
    return {s.name: constants[s.name.upper()] for s in SETTINGS}


def check_unused(explicit: dict, action: str, why: str, preset: str | None = None) -> None:
    """Refuse, naming them, the flags that `action` ("evaluate" or "predict") would ignore without a word, and a
    --preset (a training recipe)."""
    if preset:
        raise UsageError(f"{why}: leave out --preset {preset} (a training recipe)")
    unused = [FLAGS[key] for key in explicit if key not in CHECKPOINT_MODEL and action not in SETTING[key].uses]
    if unused:
        used = [s.flag for s in SETTINGS if action in s.uses]
        raise UsageError(f"{why}: leave out {', '.join(unused)} (it uses only {', '.join(used)})")


# What a run saved before a field of RunConfig existed used for it: `RunConfig.from_dict` fills in these, and nothing
# else does (a new run's every field comes from its settings, whose defaults are main.py's constants alone).
SAVED_BEFORE = {
    "global_batch_size": None,  # before e3d3ae3 (the presets' global batch): batch_size x processes, not recorded
    **PAPER_LOSS_WEIGHTS,  # before 646cac0 the loss weights were no settings: runs trained with AFMALoss's own
    "mean": "auto",  # before 49fa0f1 (--in-channels, --mean / --std): the encoder weights' normalisation, RGB
    "std": "auto",
    "tile": 0,  # before 49fa0f1 (--tile / --tile-overlap) --predict segmented whole images, which 0 does (up to
    "tile_overlap": 128,  # 2048x2048 pixels); the overlap, unused then, is the one --tile came with
    "train_size": "",  # before a99930a (--train-size / --eval-size): the data set's own crops
    "eval_size": "",
}


@dataclass(frozen=True)
class RunConfig:
    """A run's settings as checked by `make_config`, which gives every field: a setting's default is main.py's
    constant alone (a field here has none), a field a run saved before it existed lacks is `SAVED_BEFORE`'s."""
    model: ModelSpec
    data_dir: str
    encoder_weights: str | None
    allow_random_init: bool
    mean: str  # as given (--mean); the values used are the model spec's
    std: str
    class_weights: tuple[float, ...] | None
    epochs: int
    batch_size: int  # per process
    global_batch_size: int | None  # batch_size x the number of processes: the batch one optimiser step sees
    lr: float
    milestones: tuple[int, ...]
    ce_weight: float
    mse_weight: float
    train_size: str  # --train-size / --eval-size as HxW ("": the data set's own); the sizes used are the spec's
    eval_size: str
    device: str
    amp: bool
    tf32: bool
    compile: bool
    seed: int
    deterministic: bool
    workers: int
    save_every: float  # minutes between writes of last.pt (0: every epoch)
    output_dir: str
    tile: int  # --predict's windows (recorded with the run's settings; training does not use them)
    tile_overlap: int
    preset: str | None
    sources: dict = field(default_factory=dict)  # setting -> "flag" | "run" | "checkpoint" | "preset NAME" | "default"

    @property
    def dataset(self) -> str:
        return self.model.dataset

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def lr_schedule(self) -> str:
        """The schedule in words, so that config.json says it without reading the milestones' convention."""
        if not self.milestones:
            return f"constant {self.lr:g}"
        return f"{self.lr:g}, x{LR_GAMMA:g} at epochs {', '.join(map(str, self.milestones))}"

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["model"] = self.model.to_dict()
        data["lr_schedule"] = self.lr_schedule  # derived: from_dict ignores it
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """The config config.json (or a checkpoint) holds; a field it lacks, saved before the field existed, is what
        those runs used (`SAVED_BEFORE`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in names}
        return cls(**(SAVED_BEFORE | values | {"model": ModelSpec.from_dict(data["model"])}))

    def settings(self) -> dict:
        """The settings (main.py's names) that give this config back through `make_config`."""
        m = self.model
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        # The settings kept in the model spec, or in another form than the flag's.
        derived = {"dataset": m.dataset, "arch": m.arch, "encoder": m.encoder_name, "patch_size": m.patch_size,
                   "in_channels": m.in_channels,
                   "att_depth": SETTING["att_depth"].text(m.att_depth), "scale": m.scale,
                   "encoder_weights": self.encoder_weights or "none", "milestones": ",".join(map(str, self.milestones))}
        return {s.name: (fields | derived)[s.name] for s in SETTINGS}


def layer_settings(defaults: dict, explicit: dict, preset: str | None = None, saved: dict | None = None,
                   saved_source: str = "run") -> tuple[dict, dict]:
    """Merge the layers (flag > saved run > preset > default); returns (settings, where each came from)."""
    settings, sources = dict(defaults), dict.fromkeys(defaults, "default")
    for layer, source in ((PRESETS.get(preset, {}), f"preset {preset}"), (saved or {}, saved_source), (explicit, "flag")):
        settings.update(layer)
        sources.update(dict.fromkeys(layer, source))
    return settings, sources


def make_config(settings: dict, sources: dict | None = None, preset: str | None = None,
                saved_data: dict | None = None) -> RunConfig:
    """Check every setting, naming the flag, and build the frozen configuration of a run.

    The data set's parameters (CamVid's frame size, a folder data set's classes file) are read from --data-dir;
    `saved_data`, those of the run or checkpoint, serve where the folder has none (a classes file left behind).

    It neither prints nor reaches the hub: the model's normalisation is random initialisation's (ImageNet's);
    `utils.network.build_network` fetches the pretrained weights and puts their own normalisation in.
    """
    s, sources = settings, dict(sources or {})
    if s["dataset"] not in DATASET_TYPES:
        raise UsageError(f"--dataset {s['dataset']!r} is not valid: choose one of {', '.join(DATASET_TYPES)}")
    for option, value, low in (("--epochs", s["epochs"], 1), ("--batch-size", s["batch_size"], 1),
                               ("--in-channels", s["in_channels"], 1), ("--patch-size", s["patch_size"], 1)):
        if value < low:
            raise UsageError(f"--{option[2:]} {value} is not valid: it must be at least {low}")
    if not 0 <= s["seed"] <= SEED_MAX:
        raise UsageError(f"--seed {s['seed']} is not valid: it must be between 0 and {SEED_MAX} (2**32 - 1)")
    if not 0 < s["lr"] < float("inf"):
        raise UsageError(f"--lr {s['lr']} is not valid: it must be a positive number")
    for key in ("ce_weight", "mse_weight"):
        if not 0 <= s[key] < float("inf"):
            raise UsageError(f"{FLAGS[key]} {s[key]} is not valid: a loss weight is a number, 0 or more")
    depth = SETTING["att_depth"].value(s["att_depth"])
    if s["ce_weight"] == s["mse_weight"] == 0 and depth is not None:  # the baseline's loss is the NLL alone
        raise UsageError("--ce-weight 0 --mse-weight 0 is not valid: the loss would be 0 and nothing would train; "
                         "give either term a weight above 0")
    check_scale(s["scale"])
    overlap = check_tile(s["tile"], s["tile_overlap"], sources.get("tile_overlap", "flag") != "default")
    if not s["save_every"] >= 0:
        raise UsageError(f"--save-every {s['save_every']} is not valid: minutes, 0 or more (0: every epoch)")
    sizes = crop_sizes(s, sources)
    check_data_dir(s["data_dir"], sources.get("data_dir", "flag"), s["dataset"])
    describe = DATASET_TYPES[s["dataset"]].describe  # the folder data set's sizes: the flags' over its file's
    params = describe(s["data_dir"], saved_data, sizes) if sizes else describe(s["data_dir"], saved_data)
    dataset = dataset_class(s["dataset"], params)
    check_frame_scale(dataset, s["scale"], s["data_dir"])
    device = resolve_device(s["device"])
    weights = None if str(s["encoder_weights"]).lower() in ("none", "") else s["encoder_weights"]
    check_channels(dataset, s["in_channels"])
    try:
        mean, std = input_normalisation(s["dataset"], s["encoder"], None, s["in_channels"], s["mean"], s["std"])
        spec = ModelSpec(arch=s["arch"], encoder_name=s["encoder"], classes=tuple(dataset.classes), att_depth=depth,
                         patch_size=s["patch_size"], in_channels=s["in_channels"], dataset=s["dataset"],
                         dataset_params=params or None, scale=s["scale"],
                         train_size=network_size(dataset.train_size, s["scale"]),
                         eval_size=network_size(dataset.eval_size, s["scale"]), mean=mean, std=std)
        check_spec(spec)
        check_weights(s["encoder"], weights)
    except SettingError as error:
        if error.option == "patch_size" and "inputs" in error.reason:  # the crops of this --scale are too small
            error.reason += f", or use a larger --scale than {s['scale']} or a smaller --att-depth"
        raise usage_error(error) from None
    batch_size, processes = per_process_batch(s["batch_size"], sources.get("batch_size", ""), preset)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    plain = {key: value for key, value in s.items() if key in fields}  # a setting that is a field, as it is
    return RunConfig(**plain | dict(
        model=spec, data_dir=str(s["data_dir"]), encoder_weights=weights, class_weights=dataset.class_weights,
        batch_size=batch_size, global_batch_size=batch_size * processes, milestones=parse_milestones(s["milestones"]),
        device=device, workers=parse_workers(s["workers"], device), save_every=float(s["save_every"]),
        output_dir=str(s["output_dir"] or ""), preset=preset, sources=sources, tile_overlap=overlap,
        **{key: SETTING[key].text(tuple(sizes[key]) if key in sizes else None) for key in CROP_SIZES},
    ))


CROP_SIZES = ("train_size", "eval_size")  # --train-size, --eval-size: the folder data set's crops


def crop_sizes(s: dict, sources: dict) -> dict:
    """The crop sizes the settings give ({key: [h, w]}): the folder data set's only; a published data set trains
    and evaluates at the paper's (its released recipe), so it refuses them."""
    sizes = {key: SETTING[key].value(s[key]) for key in CROP_SIZES}
    sizes = {key: list(size) for key, size in sizes.items() if size is not None}
    if sizes and s["dataset"] != "folder":
        given = " ".join(f"{FLAGS[key]} {s[key]}" + (f" (main.py's {key.upper()})"
                                                     if sources.get(key) == "default" else "") for key in sizes)
        raise UsageError(f"{given} is not valid with --dataset {s['dataset']}: a published data set trains and "
                         f"evaluates at the paper's crop sizes (its released recipe); the size flags set the crops "
                         f"of --dataset folder")
    return sizes


def input_normalisation(dataset: str, encoder: str, weights: str | None, channels: int = 3, mean="auto",
                        std="auto") -> tuple[tuple, tuple]:
    """The (mean, std) the encoder's weights expect, as the data set's images need them (LiTS: its HU values, as
    released), one per input channel (`per_channel`: as SMP adapts the RGB filters), unless --mean / --std give
    them. None weights: random initialisation's, known here; pretrained ones read their config (the hub)."""
    given = parse_statistic("mean", mean, channels), parse_statistic("std", std, channels)
    if None in given:
        rgb = DATASET_TYPES[dataset].normalisation(*normalisation(encoder, weights))
        given = tuple(per_channel(rgb[i], channels) if value is None else value for i, value in enumerate(given))
    return given


def parse_statistic(name: str, value, channels: int) -> tuple[float, ...] | None:
    """--mean / --std: one number per channel, comma-separated (std positive), or auto (None)."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        numbers = tuple(float(part) for part in str(value).split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != channels or not all(0 <= n < float("inf") and (n > 0 or name == "mean") for n in numbers):
        kind = "positive numbers" if name == "std" else "numbers, 0 or more"
        raise UsageError(f"--{name} {value!r} is not valid: give {channels} {kind} separated by commas (one per "
                         f"--in-channels {channels} channel, on a 0..1 pixel scale), or auto")
    return numbers


def check_channels(dataset, channels: int) -> None:
    """Image files hold 1, 3 or 4 channels (OpenCV's); the shift-scale recipes (birds, skin lesions, LiTS) end in
    colour transforms (CLAHE, hue-saturation) that take grey or RGB images only."""
    if channels not in (1, 3, 4) and ".npy" not in dataset.image_suffixes:
        raise UsageError(f"--in-channels {channels} is not valid with --dataset {dataset.name}: its images are read "
                         f"with OpenCV, as grey (1), RGB (3) or RGBA (4)")
    if channels not in (1, 3) and dataset.pad_size is None:
        raise UsageError(f"--in-channels {channels} is not valid with --dataset {dataset.name}: its training recipe's "
                         f"colour transforms (CLAHE, hue-saturation) take 1 or 3 channels")


def check_frame_scale(dataset, scale: float, data_dir) -> None:
    """Frames stored below the data set's resolution (CamVid's 480x360 copy) are never enlarged: upsampling would
    invent the very detail of the small objects."""
    if scale > dataset.frame_scale:
        h, w = dataset.frame_size
        raise UsageError(f"--scale {scale} is too large for {data_dir}: its {w}x{h} {dataset.name} frames are the data "
                         f"set at scale {dataset.frame_scale}; use --scale {dataset.frame_scale} or less (upsampling "
                         f"would invent the detail small objects need), or the full-resolution frames")


def check_data_dir(path, source: str, dataset: str) -> None:
    """The data folder must exist: say where its path came from (the default is main.py's DATA_DIR)."""
    if Path(path).is_dir():
        return
    what = f"it should be the {dataset} data set's root folder"
    if Path(path).exists():
        raise UsageError(f"--data-dir {path} is a file, not a folder: {what}")
    if source == "default":
        raise UsageError(f"the default --data-dir {path} is missing: {what} (set DATA_DIR in main.py or pass "
                         f"--data-dir)")
    if source == "flag":
        raise UsageError(f"--data-dir {path} is missing: {what}")
    raise UsageError(f"--data-dir {path} (the {source}'s) is missing: {what}; pass --data-dir where it is now")


def launched_processes() -> int:
    """The number of training processes: torchrun's WORLD_SIZE, known before the process group starts."""
    return distributed.world_size() if distributed.is_distributed() else int(os.environ.get("WORLD_SIZE", "1"))


def per_process_batch(batch_size: int, source: str, preset: str | None) -> tuple[int, int]:
    """(batch per process, processes). --batch-size is per process; a preset's batch is global and is divided."""
    processes = launched_processes()
    if processes == 1 or source != f"preset {preset}":
        return batch_size, processes
    if batch_size % processes:
        raise UsageError(f"--preset {preset}: its global batch of {batch_size} does not divide among {processes} "
                         f"processes: use --nproc_per_node "
                         f"{' or '.join(str(n) for n in range(1, batch_size + 1) if batch_size % n == 0)}, or give "
                         f"--batch-size (per process; the global batch is then {processes} x --batch-size)")
    return batch_size // processes, processes


def check_scale(scale: float) -> None:
    if not 1 / 64 <= scale <= 4:
        raise UsageError(f"--scale {scale} is not valid: it must be between 1/64 and 4; 1.0 is the paper's resolution")


def fitted_overlap(tile: int, overlap: int) -> int:
    """A default overlap for windows of `tile` pixels: itself where it fits, else a quarter of the window."""
    return tile // 4 if tile and overlap >= tile else overlap


def check_tile(tile: int, overlap: int, overlap_given: bool = True) -> int:
    """Check --tile and --tile-overlap; returns the overlap to use. An overlap left at its default that a small
    --tile cannot hold (--tile 128 alone) becomes a quarter of the window: the flag not given is no error."""
    if tile < 0:
        raise UsageError(f"--tile {tile} is not valid: a window size in network pixels, or 0 (the whole image)")
    if not overlap_given:
        overlap = fitted_overlap(tile, overlap)
    if overlap < 0 or (tile and overlap >= tile):
        raise UsageError(f"--tile-overlap {overlap} is not valid: 0 or more, and less than --tile ({tile})")
    return overlap


def usage_error(error: SettingError) -> UsageError:
    """A model's SettingError in the command line's words: the flag, not the keyword."""
    flag = FLAGS.get(error.option, error.option)
    value = SETTING[error.option].text(error.value) if error.option in SETTING else error.value
    return UsageError(f"{flag} {value} is not valid{error.hint}: {error.reason} ({error.option}={error.value!r})")


def parse_depths(value) -> list[int]:
    """--att-depth for --compare: one depth or several (1,2,3,4: the depth study)."""
    depths = [SETTING["att_depth"].value(part) for part in str(value).replace(" ", "").split(",") if part]
    if not depths or None in depths:
        raise UsageError(f"--att-depth {value!r} is not valid with --compare: give the AFMA depths to compare with "
                         f"the baseline, e.g. 2 or 1,2,3,4 (the baseline is always trained)")
    return sorted(set(depths))


def parse_milestones(value) -> tuple[int, ...]:
    try:
        milestones = tuple(sorted(int(m) for m in str(value).replace(" ", "").split(",") if m))
    except ValueError:
        raise UsageError(f"--milestones {value!r} is not valid: give epochs separated by commas, e.g. 400,500") from None
    if milestones and milestones[0] < 1:  # 0 would halve the rate from the first epoch on, silently
        raise UsageError(f"--milestones {value!r}: milestones are epochs, 1 or more (the rate halves after them)")
    return milestones


def parse_workers(value, device: str) -> int:
    from utils.data.loaders import default_workers

    if str(value) == "auto":
        return default_workers(torch.device(device))
    try:
        workers = int(value)
    except ValueError:
        workers = -1
    if workers < 0:
        raise UsageError(f"--workers {value!r} is not valid: a number of loader processes (0: load in the main "
                         f"process), or auto")
    return workers


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not valid: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices")
    return name


def check_resume_flags(saved: RunConfig, explicit: dict, run_dir: Path) -> None:
    """Refuse, naming them, the flags a resumed run cannot take (it would no longer be the same run)."""
    normal = {"milestones": parse_milestones, "encoder_weights": lambda v: str(v).lower()}
    same = lambda key, a, b: (normal.get(key, SETTING[key].value)(a)  # noqa: E731
                              == normal.get(key, SETTING[key].value)(b))
    fixed = {key: value for key, value in explicit.items()
             if key not in RESUMABLE and key != "output_dir" and not same(key, saved.settings().get(key), value)}
    if fixed:
        changes = ", ".join(f"{FLAGS[key]} (was {saved.settings().get(key)!r}, given {value!r})"
                            for key, value in fixed.items())
        raise UsageError(f"--resume {run_dir}: {changes} cannot change in a resumed run; only "
                         f"{', '.join(FLAGS[key] for key in RESUMABLE)} can. Start a new run for other settings")


def check_checkpoint_flags(spec: ModelSpec, explicit: dict, path: Path) -> None:
    """A flag that contradicts the checkpoint's model is refused, naming both values."""
    keyword_of = {name: keyword for keyword, name in MODEL_KEYWORDS.items()}
    for flag in CHECKPOINT_MODEL:
        key = keyword_of.get(flag, flag)
        if flag not in explicit:
            continue
        value = SETTING[flag].value(explicit[flag])
        if value != getattr(spec, key):
            raise UsageError(f"{FLAGS[key]} {explicit[flag]} contradicts {path}, which holds a model with "
                             f"{key}={getattr(spec, key)!r}, not {key}={value!r}: leave {FLAGS[key]} out (the "
                             f"checkpoint says it)")


def run_dir_name(config: RunConfig) -> str:
    m = config.model
    return "runs/{}-{}-{}-{}-{}".format(m.dataset, m.arch, m.encoder_name,
                                        variant_name(m.att_depth),
                                        datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
