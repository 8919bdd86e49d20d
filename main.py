"""Train, validate and test a segmentation model with Across Feature Map Attention (Sang et al., TPAMI 2023).

    python main.py                                   # short run on the bundled sample, CPU or GPU
    python main.py --arch fpn --att-depth 3          # another architecture / attention depth
    python main.py --att-depth off                   # the plain SMP baseline
    python main.py --preset paper-released --data-dir data/CamVid # the authors' code as it runs (constant LR)
    torchrun --nproc_per_node 4 main.py --preset paper-declared --data-dir data/CamVid --amp  # their declared schedule
    python main.py --resume runs/RUN                 # continue an interrupted run (--epochs N: train it on to N)
    python main.py --predict photo.png --checkpoint runs/RUN/best.pt
    python main.py --checkpoint runs/RUN/best.pt --data-dir data/CamVid    # evaluate a saved model
    python main.py --compare unet --att-depth 1,2,3,4                      # baseline and AFMA at each depth

Edit the settings at the top of main.py, or override any of them with its flag. A value comes from the flag
if given, else from the run being resumed or the checkpoint being evaluated, else from --preset, else from
the constants below; config.json records which.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

try:  # the libraries take seconds to load, before any stop handler exists: a Ctrl-C then is one line too
    from models import ARCHITECTURES, check_encoder_fits
    from utils.config import CROP_SIZES, PRESETS, RESUMABLE, SETTING, SETTINGS, RunConfig, check_checkpoint_flags, \
        check_unused, layer_settings, make_config, parse_depths, setting_defaults
    from utils.engine import distributed
    from utils.errors import AFMAError, Interrupted, Terminated, UsageError
    from utils.run_folder import requeued_run, restarted, resumed_run
    from utils.signals import exit_code, late, settle, stop_name, stop_signals
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("interrupted while the libraries were loading: nothing was started", file=sys.stderr)
    sys.exit(130)

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- settings: edit, or pass flags
DATASET = "camvid"  # camvid, cityscapes, birds, skinlesion, lits, or folder: your own (docs/datasets.md)
DATA_DIR = "dataset/camvid"  # the bundled synthetic sample; point it at the real data set
ARCH = "unet"  # unet, unet++, fpn, linknet, manet, pan, pspnet, deeplabv3, deeplabv3+, upernet, segformer, dpt
ENCODER = "resnet34"  # any SMP encoder name (resnet18 ... resnet152, resnext50_32x4d, tu-<timm model>)
ENCODER_WEIGHTS = "none"  # "imagenet" as in the paper (downloaded once); "none" = random initialisation
ALLOW_RANDOM_INIT = False  # if the weights cannot be fetched: True trains from random init, False stops
IN_CHANNELS = 3  # image channels: 3 RGB; 1 grey; 4 RGBA (docs/your_model.md)
MEAN = "auto"  # input mean per channel (0..1 scale), e.g. "0.5" for 1 channel; auto: the encoder weights'
STD = "auto"  # input standard deviation per channel, like MEAN
ATT_DEPTH = "2"  # encoder depth AFMA attends to, 1..5; "off" gives the plain SMP baseline
PATCH_SIZE = 10
TRAIN_SIZE = ""  # --dataset folder: the training crop "HxW" at SCALE 1, over classes.json's; empty: the data set's own
EVAL_SIZE = ""  # --dataset folder: the evaluation crop "HxW", likewise (the published data sets keep the paper's)
EPOCHS = 12
BATCH_SIZE = 2
LR = 1e-3  # the paper uses 1e-4 over 1000 epochs (--preset paper-released); the short run needs larger steps
MILESTONES = ""  # comma-separated epochs at which the learning rate halves, e.g. "400,500,700,800,900"
CE_WEIGHT = 5.0  # the loss: CE_WEIGHT x class-weighted NLL + MSE_WEIGHT x the attention MSE (the paper's 5 and 1)
MSE_WEIGHT = 1.0  # (the baseline, --att-depth off, trains on the NLL alone)
SCALE = 0.5  # image scale: 1.0 is the paper's resolution; 0.5 keeps the CPU run short
DEVICE = "auto"  # auto (CUDA when present), cuda, cuda:1, cpu
AMP = False  # mixed precision: bf16 where supported, else fp16 with a gradient scaler
TF32 = True  # CUDA: float32 matrix products and convolutions on tensor cores (TF32); False for exact float32
COMPILE = False  # torch.compile the model (CUDA: faster steps after a compile of a minute or so)
SEED = 0
DETERMINISTIC = False
WORKERS = "auto"  # data-loader processes; auto: 2 on the CPU, the free cores (up to 16) on CUDA
SAVE_EVERY = 5.0  # minutes between writes of last.pt (also after the first and the last epoch); 0: every epoch
OUTPUT_DIR = ""  # empty: a new folder under runs/ named after dataset, architecture, encoder, depth, time
TILE = 0  # --predict: windows of this many network pixels; 0: whole images, in windows above 2048x2048
TILE_OVERLAP = 128  # pixels neighbouring windows share (their logits are averaged there)

# Each constant above is its setting's one default. A new setting: see the steps above SETTINGS in utils/config.py.
DEFAULTS = setting_defaults(globals())
DEFAULTS["data_dir"] = str(HERE / DATA_DIR)  # a relative DATA_DIR is in main.py's folder, wherever it runs from


def parse_args(argv=None) -> tuple[argparse.Namespace, dict]:
    """The actions, and the settings given explicitly on the command line (nothing else: see layer_settings)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = p.add_argument_group("settings (default: the constant at the top of main.py)")
    for setting in SETTINGS:
        default = DEFAULTS[setting.name] if DEFAULTS[setting.name] != "" else "none"
        kind = dict(action=argparse.BooleanOptionalAction) if setting.type is bool else dict(type=setting.type)
        group.add_argument(setting.flag, default=argparse.SUPPRESS, help=f"{setting.help} (default: {default})", **kind)
    p.add_argument("--preset", choices=sorted(PRESETS), help="the authors' recipe: paper-released "
                   "is what their code runs (the LR stays 1e-4: it never steps its scheduler), paper-declared the "
                   "milestones it declares; " + "; ".join(f"{name}: {values}" for name, values in PRESETS.items())
                   + " (explicit flags win; the batch is global: torchrun divides it among the processes)")
    action = p.add_argument_group("actions (default: train a new run)")
    action.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt; only "
                        + ", ".join("--" + k.replace("_", "-") for k in RESUMABLE) + " may change")
    action.add_argument("--allow-changed-run", action="store_true", help="with --resume (or --compare, "
                        "--resume-if-exists): resume although the data's files or their content, or the number of "
                        "processes (the global batch), differ from what the run was trained with; refused otherwise")
    action.add_argument("--resume-if-exists", action="store_true", help="for schedulers that requeue the same "
                        "command: if --output-dir holds a run of these settings, continue it as --resume would (a "
                        "finished one: nothing to do); a torchrun restart (TORCHELASTIC_RESTART_COUNT > 0) does so "
                        "by itself")
    action.add_argument("--checkpoint", metavar="FILE", help="best.pt or last.pt of a run: alone, evaluate it on the "
                        "val and test splits (the model and its scale come from the file; metrics.json into "
                        "--output-dir if given); with --predict, the model to use")
    action.add_argument("--predict", metavar="PATH", help="segment an image or a folder of images (needs --checkpoint)")
    action.add_argument("--overwrite", action="store_true", help="with --predict: replace existing outputs; with "
                        "--compare: train the comparison in --output-dir anew (its runs are deleted), e.g. on other "
                        "data")
    action.add_argument("--compare", metavar="ARCH", help=f"train the baseline and AFMA of ARCH ({', '.join(ARCHITECTURES)}"
                        ", or all) with the same seed and data, and report both")
    action.add_argument("--seeds", metavar="S,S,...", help="with --compare: train every model once per seed (the "
                        "same seeds for all) and report mean +- std and paired bootstrap intervals, e.g. 0,1,2")
    args = p.parse_args(argv)
    explicit = {key: value for key, value in vars(args).items() if key in DEFAULTS}
    return args, explicit


# ------------------------------------------------------------------------------------------- the actions
def new_run(args, explicit) -> RunConfig:
    settings, sources = layer_settings(DEFAULTS, explicit, args.preset)
    return make_config(settings, sources, args.preset)


def run(args, explicit) -> int:
    actions = [f"--{name}" for name in ("resume", "compare", "predict") if getattr(args, name)]
    if len(actions) > 1 or (args.checkpoint and actions and actions != ["--predict"]):
        given = actions + (["--checkpoint"] if args.checkpoint else [])
        raise UsageError(f"{' and '.join(given)} are different actions: give one of them (--predict goes with "
                         f"--checkpoint)")
    if args.seeds is not None and not args.compare:
        raise UsageError("--seeds goes with --compare ARCH: it trains every model of the comparison once per seed")
    if args.overwrite and not (args.predict or args.compare):
        raise UsageError("--overwrite goes with --predict (replace its outputs) or --compare (train it anew): a run "
                         "never replaces another; choose a new --output-dir")
    if args.allow_changed_run and not (args.resume or args.compare or args.resume_if_exists or restarted()):
        raise UsageError("--allow-changed-run goes with --resume RUN_DIR, --compare or --resume-if-exists: a new run "
                         "has no earlier data to differ from")
    if args.resume_if_exists and (actions or args.checkpoint or not explicit.get("output_dir")):
        raise UsageError("--resume-if-exists goes with a new run's command and its --output-dir: the folder that "
                         "command continues when it runs again")
    if args.predict:
        from utils.apps.predict import predict
        from utils.config import check_scale, check_tile, resolve_device
        from utils.engine.checkpoint import checkpoint_spec, load_checkpoint

        if not args.checkpoint:
            raise UsageError("--predict PATH needs --checkpoint RUN_DIR/best.pt")
        check_unused(explicit, "predict", "--predict takes its model from --checkpoint", args.preset)
        check_checkpoint_flags(checkpoint_spec(load_checkpoint(args.checkpoint), Path(args.checkpoint)), explicit,
                               Path(args.checkpoint))
        if "scale" in explicit:
            check_scale(explicit["scale"])
        tile = explicit.get("tile", DEFAULTS["tile"])
        tile = tile, check_tile(tile, explicit.get("tile_overlap", DEFAULTS["tile_overlap"]), "tile_overlap" in explicit)
        written = predict(Path(args.predict), Path(args.checkpoint), explicit.get("output_dir") or None,
                          resolve_device(explicit.get("device", DEFAULTS["device"])), explicit.get("scale"), args.overwrite,
                          *tile)
        print(f"wrote {len(written)} files to {written[0].parent}" if written else "nothing to write")
        return 0
    if args.checkpoint:
        from utils.apps.evaluate import checkpoint_run, evaluate_checkpoint

        evaluate_checkpoint(*checkpoint_run(args, explicit, DEFAULTS))
        return 0
    if args.compare:
        return compare(args, explicit)
    from utils.apps.train import train

    if args.resume:
        train(*resumed_run(args, explicit, DEFAULTS))
        return 0
    if (args.resume_if_exists or restarted()) and explicit.get("output_dir"):
        requeued = requeued_run(args, explicit, DEFAULTS)
        if requeued == "finished":
            return 0
        if requeued:
            train(*requeued)
            return 0
    train(new_run(args, explicit))
    return 0


def compare(args, explicit) -> int:
    from utils.apps.compare import compare as run_comparison, parse_archs
    from utils.apps.train import train

    archs = parse_archs(args.compare)
    depths = parse_depths(explicit.get("att_depth", DEFAULTS["att_depth"]))
    base = new_run(args, {key: value for key, value in explicit.items() if key != "att_depth"})
    if len(archs) > 1:  # all: those that take the encoder (DPT takes a ViT, the others a feature pyramid)
        left_out = [arch for arch in archs if check_encoder_fits(arch, base.model.encoder_name)]
        archs = [arch for arch in archs if arch not in left_out]
        for arch in left_out:
            distributed.log(f"note: --compare all leaves out {arch}: {check_encoder_fits(arch, base.model.encoder_name)}")
    out_dir = Path(base.output_dir or "runs/compare-{}-{}-{}-afma{}".format(
        base.dataset, args.compare, base.model.encoder_name, "".join(map(str, depths))))

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None

    def make_run(arch, depth, seed, run_dir):
        flags = explicit | {"arch": arch, "att_depth": SETTING["att_depth"].text(depth), "output_dir": str(run_dir)}
        return new_run(args, flags if seed is None else flags | {"seed": seed})

    identity = base.settings() | {"compare": args.compare, "att_depth": ",".join(map(str, depths))}
    if seeds is not None:
        identity |= {"seeds": seeds, "seed": None}
    for key in (*RESUMABLE, "output_dir"):  # where and how it runs, and how long, is no part of what it compares
        identity.pop(key, None)
    for key in CROP_SIZES:  # the data set's own sizes: as a comparison recorded before the size flags existed
        if not identity[key]:
            identity.pop(key)
    run_comparison(archs, depths, out_dir, make_run, train, identity, seeds, args.allow_changed_run, args.overwrite)
    return 0


def parse_seeds(value: str) -> list[int]:
    """--seeds 0,1,2: distinct integers, in the order given."""
    try:
        seeds = [int(part) for part in value.split(",")]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {value!r} is not valid: give distinct integers separated by commas, e.g. 0,1,2")
    return seeds


# ------------------------------------------------------------------------------------------- entry point
STAND_DOWN_S = 60  # under torchrun, how long a silent rank that stopped waits for torchrun to end it (see main)


def main(argv=None, process_ends: bool = False) -> int:
    """Exit status: 0 done; 2 a setting, data or checkpoint error (one line); 130 Ctrl-C; 143 SIGTERM.
    Under torchrun every rank meets the same errors and stops (they are decided by rank 0 and broadcast, or
    computed alike): rank 0 alone says so, and the others wait for torchrun to end them (`stand_down`), so that
    the first process to exit is the one that said why. `process_ends` (python main.py): the stop handlers stay
    after main, recording only, so that a signal while the interpreter shuts down changes nothing."""
    args, explicit = parse_args(argv)
    speaks = distributed.launched_rank() == 0
    with stop_signals(restore=not process_ends):
        code, message = outcome(args, explicit)
        if message and speaks:
            print(message, file=sys.stderr, flush=True)
        elif message and code and launched_world_size() > 1:
            stand_down(message)
        return code


def outcome(args, explicit) -> tuple[int, str | None]:
    """Run the action: (exit status, the line that says how it ended). Every stop ends here, whenever it lands:
    its line says what it left (a run's own, from utils.run_folder.interrupted, or one of these)."""
    done = False
    try:
        try:
            try:
                code, message = run(args, explicit), None
                done = True
            except Interrupted as stop:
                code, message = stop.exit_code, str(stop)
            except AFMAError as error:
                code, message = 2, f"error: {error}"
            finally:
                settle()  # decided: a signal from here on is recorded (late) and changes nothing said above
        except (KeyboardInterrupt, Terminated) as stop:  # raised outside a run's own stop handling, or above
            settle()
            code, message = exit_code(stop), stop_message(stop, done)
        distributed.cleanup()  # settled: a signal now is recorded, and read just below
        stop = late()
        if stop and code == 0:  # the work was done when the signal came: it is said, and the status is the stop's
            code, message = exit_code(stop), stop_message(stop, done=True)
        return code, message
    finally:
        distributed.cleanup()  # after a bug's exception too (a no-op the second time)


def stop_message(stop: BaseException, done: bool) -> str:
    if done:
        return f"{stop_name(stop)} after the work was done: nothing is lost"
    return f"{stop_name(stop)}: stopped; every file written before the stop is whole"


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def stand_down(message: str) -> None:
    """A silent rank that stopped (the same error or signal as rank 0) waits for torchrun to end it: torchrun ends
    the whole group as soon as one rank exits, and rank 0, ended before it printed its line, would exit without a
    word. If torchrun has not ended it after STAND_DOWN_S, rank 0 did not stop (an error of this rank alone): it
    says its own line and exits."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # torchrun's SIGTERM ends it at once
    time.sleep(STAND_DOWN_S)
    print(f"rank {distributed.launched_rank()}: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(process_ends=True))
