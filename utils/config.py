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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models import ATTENTION_DEPTHS, ModelSpec, SettingError, WeightsUnavailable, check_spec, normalisation, variant_name
from utils.data.datasets import DATASETS
from utils.data.transforms import network_size
from utils.engine import distributed
from utils.errors import UsageError

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
# The flag of each model keyword, for messages that name what the user can change.
FLAGS = {"arch": "--arch", "encoder_name": "--encoder", "encoder_weights": "--encoder-weights",
         "att_depth": "--att-depth", "patch_size": "--patch-size", "classes": "--dataset"}
# What a resumed run may change: where its data is and how it runs, not what it computes.
RESUMABLE = ("data_dir", "workers", "device", "epochs", "save_every", "tf32", "compile")


@dataclass(frozen=True)
class RunConfig:
    model: ModelSpec
    data_dir: str
    encoder_weights: str | None = None
    allow_random_init: bool = False
    class_weights: tuple[float, ...] | None = None
    epochs: int = 12
    batch_size: int = 2  # per process
    global_batch_size: int = 2  # batch_size x the number of processes: the batch one optimiser step sees
    lr: float = 1e-3
    milestones: tuple[int, ...] = ()
    device: str = "cpu"
    amp: bool = False
    tf32: bool = True
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    workers: int = 2
    save_every: float = 5.0  # minutes between writes of last.pt (0: every epoch)
    output_dir: str = ""
    preset: str | None = None
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
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in names}
        return cls(**(values | {"model": ModelSpec.from_dict(data["model"])}))

    def settings(self) -> dict:
        """The settings (main.py's names) that give this config back through `make_config`."""
        m = self.model
        return {"dataset": m.dataset, "data_dir": self.data_dir, "arch": m.arch, "encoder": m.encoder_name,
                "encoder_weights": self.encoder_weights or "none", "allow_random_init": self.allow_random_init,
                "att_depth": "off" if m.att_depth is None else str(m.att_depth), "patch_size": m.patch_size,
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "milestones": ",".join(map(str, self.milestones)), "scale": m.scale, "device": self.device,
                "amp": self.amp, "tf32": self.tf32, "compile": self.compile, "seed": self.seed,
                "deterministic": self.deterministic, "workers": self.workers, "save_every": self.save_every,
                "output_dir": self.output_dir}


def layer_settings(defaults: dict, explicit: dict, preset: str | None = None, saved: dict | None = None,
                   saved_source: str = "run") -> tuple[dict, dict]:
    """Merge the layers (flag > saved run > preset > default); returns (settings, where each came from)."""
    settings, sources = dict(defaults), dict.fromkeys(defaults, "default")
    for layer, source in ((PRESETS.get(preset, {}), f"preset {preset}"), (saved or {}, saved_source), (explicit, "flag")):
        settings.update(layer)
        sources.update(dict.fromkeys(layer, source))
    return settings, sources


def make_config(settings: dict, sources: dict | None = None, preset: str | None = None) -> RunConfig:
    """Check every setting, naming the flag, and build the frozen configuration of a run."""
    s = settings
    if s["dataset"] not in DATASETS:
        raise UsageError(f"--dataset {s['dataset']!r} is not valid: choose one of {', '.join(DATASETS)}")
    for option, value, low in (("--epochs", s["epochs"], 1), ("--batch-size", s["batch_size"], 1),
                               ("--patch-size", s["patch_size"], 1), ("--seed", s["seed"], 0)):
        if value < low:
            raise UsageError(f"--{option[2:]} {value} is not valid: it must be at least {low}")
    if not 0 < s["lr"] < float("inf"):
        raise UsageError(f"--lr {s['lr']} is not valid: it must be a positive number")
    check_scale(s["scale"])
    if not s["save_every"] >= 0:
        raise UsageError(f"--save-every {s['save_every']} is not valid: minutes, 0 or more (0: every epoch)")
    dataset = DATASETS[s["dataset"]]
    device = resolve_device(s["device"])
    weights = None if str(s["encoder_weights"]).lower() in ("none", "") else s["encoder_weights"]
    depth = parse_depth(s["att_depth"])
    try:
        try:
            mean, std = normalisation(s["encoder"], weights)
        except WeightsUnavailable as error:
            if not s["allow_random_init"]:
                raise UsageError(f"{error} (or pass --allow-random-init to fall back to it)") from None
            if distributed.is_main():
                print(f"warning: {error}; --allow-random-init: training from random initialisation instead")
            weights = None
            mean, std = normalisation(s["encoder"], None)
        mean, std = dataset.normalisation(mean, std)  # LiTS: the encoder's preprocessing of HU values, as released
        spec = ModelSpec(arch=s["arch"], encoder_name=s["encoder"], classes=tuple(dataset.classes), att_depth=depth,
                         patch_size=s["patch_size"], dataset=s["dataset"], scale=s["scale"],
                         train_size=network_size(dataset.train_size, s["scale"]),
                         eval_size=network_size(dataset.eval_size, s["scale"]), mean=mean, std=std)
        check_spec(spec)
    except SettingError as error:
        if error.option == "patch_size" and "inputs" in error.reason:  # the crops of this --scale are too small
            error.reason += f", or use a larger --scale than {s['scale']} or a smaller --att-depth"
        raise usage_error(error) from None
    batch_size, processes = per_process_batch(s["batch_size"], (sources or {}).get("batch_size", ""), preset)
    return RunConfig(
        model=spec, data_dir=str(s["data_dir"]), encoder_weights=weights, allow_random_init=s["allow_random_init"],
        class_weights=dataset.class_weights, epochs=s["epochs"], batch_size=batch_size,
        global_batch_size=batch_size * processes, lr=s["lr"],
        milestones=parse_milestones(s["milestones"]), device=device, amp=s["amp"], tf32=s["tf32"],
        compile=s["compile"], seed=s["seed"], deterministic=s["deterministic"], workers=parse_workers(s["workers"], device),
        save_every=float(s["save_every"]), output_dir=str(s["output_dir"] or ""), preset=preset,
        sources=dict(sources or {}),
    )


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


def usage_error(error: SettingError) -> UsageError:
    """A model's SettingError in the command line's words: the flag, not the keyword."""
    flag = FLAGS.get(error.option, error.option)
    value = "off" if error.option == "att_depth" and error.value is None else error.value
    return UsageError(f"{flag} {value} is not valid{error.hint}: {error.reason} ({error.option}={error.value!r})")


def parse_depth(value) -> int | None:
    if str(value).lower() in ("off", "none"):
        return None
    if str(value) not in tuple(map(str, ATTENTION_DEPTHS)):
        raise UsageError(f"--att-depth {value!r} is not valid: choose one of "
                         f"{', '.join(map(str, ATTENTION_DEPTHS))}, or off (the plain baseline)")
    return int(value)


def parse_depths(value) -> list[int]:
    """--att-depth for --compare: one depth or several (1,2,3,4: the depth study)."""
    depths = [parse_depth(part) for part in str(value).replace(" ", "").split(",") if part]
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
    normal = {"milestones": parse_milestones, "att_depth": parse_depth, "encoder_weights": lambda v: str(v).lower()}
    same = lambda key, a, b: normal.get(key, lambda v: v)(a) == normal.get(key, lambda v: v)(b)  # noqa: E731
    fixed = {key: value for key, value in explicit.items()
             if key not in RESUMABLE and key != "output_dir" and not same(key, saved.settings().get(key), value)}
    if fixed:
        changes = ", ".join(f"--{key.replace('_', '-')} (was {saved.settings().get(key)!r}, given {value!r})"
                            for key, value in fixed.items())
        raise UsageError(f"--resume {run_dir}: {changes} cannot change in a resumed run; only "
                         f"{', '.join('--' + k.replace('_', '-') for k in RESUMABLE)} can. Start a new run for other "
                         f"settings")


def check_checkpoint_flags(spec: ModelSpec, explicit: dict, path: Path) -> None:
    """A flag that contradicts the checkpoint's model is refused, naming both values."""
    for key, flag in (("arch", "arch"), ("encoder_name", "encoder"), ("att_depth", "att_depth"), ("patch_size", "patch_size")):
        if flag not in explicit:
            continue
        value = parse_depth(explicit[flag]) if key == "att_depth" else explicit[flag]
        if value != getattr(spec, key):
            raise UsageError(f"{FLAGS[key]} {explicit[flag]} contradicts {path}, which holds a model with "
                             f"{key}={getattr(spec, key)!r}, not {key}={value!r}: leave {FLAGS[key]} out (the "
                             f"checkpoint says it)")


def run_dir_name(config: RunConfig) -> str:
    m = config.model
    return "runs/{}-{}-{}-{}-{}".format(m.dataset, m.arch, m.encoder_name,
                                        variant_name(m.att_depth),
                                        datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
