"""A run's folder through its life: the one place that says who may write it, what it holds, and how a run in it
goes on.

- the claim: RUN/.lock, flock-ed by the run's rank 0 for the run's life (`claim_problem`, `claim_first`)
- the folder: --output-dir, or a new one under runs/ (`prepare_run_dir`, `automatic_run_dir`)
- the status: how far the run in it got (`run_status`, `Stage`, `kept_progress`)
- resume: --resume RUN_DIR with the run's saved settings (`resumed_run`, `saved_config`, `Resume`, `check_same_run`)
- requeue and restart: --resume-if-exists, a torchrun restart (`requeued_run`, `restarted`)
- a stop: what it leaves in the folder and the command that continues it (`interrupted`, `resume_command`)

main.py's DEFAULTS come in as an argument (`defaults`): this module does not import main.py.
"""
from __future__ import annotations

import argparse
import enum
import fcntl
import itertools
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.config import RESUMABLE, RunConfig, check_resume_flags, layer_settings, make_config, run_dir_name
from utils.engine import distributed
from utils.engine.checkpoint import load_checkpoint, run_changes
from utils.engine.distributed import log
from utils.errors import Interrupted, UsageError
from utils.signals import exit_code, stop_name

CLAIM = ".lock"  # RUN/.lock: holds "PID host" of the run that owns the folder


# ----------------------------------------------------------------------------------------------------- the claim
_claims: dict[Path, object] = {}  # the claims this process holds, by folder


def claim_problem(run_dir: Path, flag: str) -> str | None:
    """Claim `run_dir` for this run (for this process's life; a second claim by it is a no-op), or say why not.

    The kernel drops an flock when its process dies, however it dies: a dead run's claim never blocks a --resume.
    """
    run_dir = run_dir.resolve()
    if run_dir in _claims:
        return None
    try:
        file = open(run_dir / CLAIM, "a+")
    except OSError as error:
        return f"{flag} {run_dir} cannot be written ({error.strerror}): choose a folder you can write"
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.seek(0)
        owner = file.read().split() or ["?", "?"]
        file.close()
        return (f"{run_dir} is in use by another run (PID {owner[0]} on {owner[-1]}): wait until it ends, or choose "
                f"another folder")
    try:
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()} {socket.gethostname()}\n")
        file.flush()
    except OSError as error:  # a full disk: the claim cannot name its owner
        file.close()
        return f"{run_dir / CLAIM} cannot be written ({error.strerror}): free space, or choose a folder you can write"
    _claims[run_dir] = file
    return None


def release_claim(run_dir: Path, remove: bool = False) -> None:
    file = _claims.pop(run_dir.resolve(), None)
    if file is not None:
        if remove:
            (run_dir / CLAIM).unlink(missing_ok=True)
        file.close()


def claim_first(run_dir: Path) -> None:
    """--resume of a run folder takes its claim before saying anything of it: a run still going there is refused
    as in use, not first described from the files it is writing (rank 0 claims; train() then holds it)."""
    run_files = [run_dir / name for name in (CLAIM, "config.json", "last.pt")]
    if distributed.launched_rank() != 0 or not any(path.is_file() for path in run_files):
        return  # no run's folder: the status check says what it is
    problem = claim_problem(run_dir, "--resume")
    if problem:
        raise UsageError(problem)


# ---------------------------------------------------------------------------------------------------- the folder
def prepare_run_dir(config: RunConfig, training: bool = True) -> Path:
    """The run's folder: --output-dir, or a new one under runs/. An existing run is never overwritten; a run
    stopped before its first checkpoint (config.json alone) is started again."""
    run_dir, problem = Path(config.output_dir or "."), None
    if distributed.is_main() and not config.output_dir:
        run_dir, problem = automatic_run_dir(config)
    run_dir = Path(distributed.broadcast_object(str(run_dir)))  # rank 0's folder
    if distributed.is_main() and not problem:
        if run_dir.exists() and not run_dir.is_dir():
            problem = f"--output-dir {run_dir} is a file, not a folder: choose a new one"
        else:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                problem = f"--output-dir {run_dir} cannot be created ({error.strerror}): choose a folder you can write"
        fresh = not problem and not (run_dir / CLAIM).exists()
        problem = problem or claim_problem(run_dir, "--output-dir")  # before looking inside: another run may be filling it
        if not problem:
            if training and stopped_before_first_checkpoint(run_dir):
                log(f"{run_dir} holds a run stopped before its first checkpoint: starting it again there")
            elif any(path.name != CLAIM for path in run_dir.iterdir()):
                problem = f"--output-dir {run_dir} is not an empty folder: choose a new one" + (
                    f", or continue that run with --resume {run_dir}" if training and (run_dir / "last.pt").exists() else "")
                release_claim(run_dir, remove=fresh)  # a folder this run did not create keeps no trace of it
    problem = distributed.broadcast_object(problem)  # every rank stops, none waits for the others
    if problem:
        raise UsageError(problem)
    return run_dir


def automatic_run_dir(config: RunConfig) -> tuple[Path, str | None]:
    """A new folder under runs/ (without --output-dir): NAME (dataset, model, time to the second), else NAME-2,
    NAME-3, ...; made here with an exclusive mkdir, so that runs started in the same second get a folder each."""
    base = Path(run_dir_name(config))
    for number in itertools.count(1):
        run_dir = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir, None
        except FileExistsError:
            continue
        except OSError as error:
            return run_dir, (f"{run_dir} cannot be created ({error.strerror}): give --output-dir a folder you can "
                             f"write")


# ---------------------------------------------------------------------------------------------------- the status
class Stage(enum.Enum):
    EMPTY = "empty"  # no folder, or nothing in it but a claim
    STARTED = "started"  # config.json but no last.pt: stopped before its first checkpoint, starts again
    RESUMABLE = "resumable"  # last.pt of an epoch before the last
    TRAINED = "trained"  # last.pt of the last epoch, but no metrics.json: its final evaluation is due
    FINISHED = "finished"  # trained and tested: metrics.json
    FOREIGN = "foreign"  # files, but neither config.json nor last.pt: not a run of main.py


@dataclass(frozen=True)
class RunStatus:
    run_dir: Path
    last: dict | None  # last.pt, loaded
    started: bool  # config.json is there
    tested: bool  # metrics.json is there
    empty: bool

    @property
    def epoch(self) -> int | None:
        return self.last["epoch"] if self.last else None

    def stage(self, epochs: int | None = None) -> Stage:
        """The stage against `epochs` (default: the run's own; --epochs N extends a finished run)."""
        if self.last:
            epochs = epochs or self.last["config"]["epochs"]
            return Stage.RESUMABLE if self.epoch < epochs else Stage.FINISHED if self.tested else Stage.TRAINED
        return Stage.STARTED if self.started else Stage.EMPTY if self.empty else Stage.FOREIGN


def run_status(run_dir: Path) -> RunStatus:
    """What `run_dir` holds (last.pt is loaded: a corrupt one is a CheckpointError); the one answer train,
    --resume, the requeue and --compare all use."""
    run_dir = Path(run_dir)
    last = load_checkpoint(run_dir / "last.pt") if (run_dir / "last.pt").is_file() else None
    empty = not run_dir.is_dir() or all(path.name == CLAIM for path in run_dir.iterdir())
    return RunStatus(run_dir, last, stopped_before_first_checkpoint(run_dir), (run_dir / "metrics.json").is_file(),
                     empty)


def stopped_before_first_checkpoint(run_dir: Path) -> bool:
    """config.json without last.pt (cheap: reads no checkpoint)."""
    return (run_dir / "config.json").is_file() and not (run_dir / "last.pt").exists()


def kept_progress(run_dir: Path) -> tuple[int, int] | None:
    """(the epoch in run_dir/last.pt, the run's epochs there), None without one; memory-mapped, so it reads little
    of a large file. Read while a run stops: a signal then is not raised (utils/signals.py), so it cannot cut the
    read and make an existing last.pt look unreadable."""
    path = Path(run_dir) / "last.pt"
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return state["epoch"], state["config"]["epochs"]
    except Exception:  # noqa: BLE001 - a message's detail; the file is checked again when it is resumed
        return None


# -------------------------------------------------------------------------------------------------------- resume
@dataclass(frozen=True)
class Resume:
    run_dir: Path
    state: dict | None  # last.pt; None for a run stopped before its first checkpoint (it starts over)
    allow_changed: bool = False  # --allow-changed-run: resume on other data or another number of processes


def resumed_run(args, explicit: dict, defaults: dict, status: RunStatus | None = None) -> tuple[RunConfig, Resume]:
    """The run in --resume RUN_DIR with its own settings, less what the flags may change (`defaults`: main.py's;
    `status`: the folder's run_status, when the caller has it already)."""
    run_dir = Path(args.resume)
    refuse_resume_flags(run_dir, args, explicit)
    claim_first(run_dir)
    status = status or run_status(run_dir)
    saved = resumable_config(run_dir, status)
    check_resume_flags(saved, explicit, run_dir)
    settings, _ = layer_settings(defaults, explicit, saved=saved.settings())
    sources = saved.sources | dict.fromkeys(explicit, "flag")  # where each value first came from
    # Its weights come from last.pt: no download of pretrained ones (offline nodes resume too).
    config = make_config(settings | {"output_dir": str(run_dir), "encoder_weights": "none"}, sources, saved.preset,
                         saved_data=saved.model.dataset_params)
    found, then = config.model.dataset_params, saved.model.dataset_params
    # CamVid's other copy, an edited classes.json (a run saved before the spec recorded them is not checked).
    if then is not None and found != then and not args.allow_changed_run:
        raise UsageError(f"--resume {run_dir}: the data in {config.data_dir} is not what the run started on (its "
                         f"{config.dataset} parameters are {found}, the run's {then}); give the run's data, or pass "
                         f"--allow-changed-run to resume anyway")
    config = config.replace(model=saved.model, encoder_weights=saved.encoder_weights)  # exactly the model it was
    check_epochs_left(run_dir, status, config.epochs, "epochs" in explicit)
    return config, Resume(run_dir, status.last, args.allow_changed_run)


def refuse_resume_flags(run_dir: Path, args, explicit: dict) -> None:
    """What --resume refuses before reading the folder: a file, another --output-dir, a --preset."""
    if run_dir.is_file():
        raise UsageError(f"--resume {run_dir} is a file: give the run's folder, --resume {run_dir.parent}")
    if "output_dir" in explicit and Path(explicit["output_dir"]) != run_dir:
        raise UsageError(f"--resume {run_dir} continues in that folder: leave out --output-dir {explicit['output_dir']}")
    if args.preset:
        raise UsageError(f"--resume {run_dir} keeps the run's own settings: leave out --preset {args.preset}")


def resumable_config(run_dir: Path, status: RunStatus) -> RunConfig:
    """The settings the run was saved with: last.pt's, or config.json's for a run stopped in its first epoch."""
    if status.last:
        return saved_config(status.last["config"], run_dir / "last.pt")
    if status.stage() is Stage.STARTED:
        saved = saved_config(json.loads((run_dir / "config.json").read_text()), run_dir / "config.json")
        log(f"{run_dir} has no checkpoint yet (it stopped during its first epoch): starting it again from epoch 1 "
            f"with its saved settings")
        return saved
    raise UsageError(f"--resume {run_dir}: no last.pt there; give the folder of a run started by main.py")


def check_epochs_left(run_dir: Path, status: RunStatus, epochs: int, epochs_given: bool) -> None:
    """Refuse a resume with nothing to do (`epochs_given`: --epochs was on the command line); say when only the
    final evaluation is left."""
    if status.last and status.epoch > epochs:
        raise UsageError(f"--epochs {epochs}: {run_dir} has already trained {status.epoch} epochs")
    if status.stage(epochs) is Stage.FINISHED:
        more = "" if epochs_given else f"; give --epochs N (more than {status.epoch}) to train it on"
        raise UsageError(f"{run_dir} has already trained and tested its {status.epoch} epochs{more}")
    if status.stage(epochs) is Stage.TRAINED:
        log(f"{run_dir} finished training but not its final evaluation: evaluating the best epoch now")


def saved_config(data: dict, path: Path) -> RunConfig:
    try:
        return RunConfig.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"{path} does not hold the settings of a run written by this version of main.py "
                         f"({type(error).__name__}: {error}); start a new run") from None


def check_same_run(resume: Resume, record: dict) -> None:
    """Refuse to resume on other data, or with another number of processes (another global batch), unless
    --allow-changed-run: best-epoch selection would compare scores of different val sets, an epoch would have
    other steps. last.pt records `trained_on` since this check exists; older runs are not checked."""
    recorded = resume.state.get("trained_on")
    changes = run_changes(recorded, record) if recorded else []
    if not changes:
        return
    if not resume.allow_changed:
        raise UsageError(f"--resume {resume.run_dir}: {'; '.join(changes)}; pass --allow-changed-run to resume anyway")
    log(f"note: --allow-changed-run: resuming {resume.run_dir} although {'; '.join(changes)}")


def finished_metrics(run_dir: Path, epoch: int) -> list[dict]:
    """When a finished run is extended (--resume RUN --epochs N), the summary of its earlier finish."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text())
    run = metrics.get("run", {})
    if run.get("epochs") != epoch:
        return []
    return [{**run, "val_miou": metrics["val"]["miou"], "test_miou": metrics["test"]["miou"]}]


# ------------------------------------------------------------------------------------------- requeue and restart
def restarted() -> bool:
    """A torchrun restart of the process group (--max-restarts): the same command, after a rank failed."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def requeued_run(args, explicit: dict, defaults: dict):
    """--resume-if-exists or a torchrun restart: the run in --output-dir, continued if it is this command's
    (`defaults`: main.py's). Returns (config, Resume), "finished", or None (no run there yet: start it)."""
    run_dir = Path(explicit["output_dir"])
    status = run_status(run_dir)
    if not status.last:  # empty, or stopped before its first checkpoint: the new run (re)starts there
        return None
    new = make_config(*layer_settings(defaults, explicit, args.preset), args.preset)  # this command's own run
    saved = saved_config(status.last["config"], run_dir / "last.pt")
    now, then = new.settings(), saved.settings()
    changed = [key for key in now if key not in (*RESUMABLE, "output_dir") and now[key] != then[key]]
    if changed:
        key = changed[0]
        raise UsageError(f"--output-dir {run_dir} holds a run with other settings (--{key.replace('_', '-')} "
                         f"{then[key]!r} there, {now[key]!r} now): choose another folder, or continue that run with "
                         f"--resume {run_dir}")
    if status.epoch == new.epochs and status.stage(new.epochs) is Stage.FINISHED:
        log(f"{run_dir} has already trained and tested its {status.epoch} epochs: nothing to do")
        return "finished"
    flags = {key: value for key, value in explicit.items() if key in RESUMABLE}
    flags |= {"epochs": new.epochs} if new.epochs != saved.epochs else {}  # the command's length, given or not
    resume = argparse.Namespace(**{**vars(args), "resume": str(run_dir), "preset": None})
    return resumed_run(resume, flags, defaults, status)


# -------------------------------------------------------------------------------------------------------- a stop
def interrupted(run_dir: Path, stop: BaseException, epochs: int | None = None) -> Interrupted:
    """What a Ctrl-C or SIGTERM leaves, read from the folder (every rank says the same), and how to go on.
    `epochs`: the run's length (default: last.pt's; a run being trained on to more epochs has not written it yet)."""
    name = stop_name(stop)
    kept, command = kept_progress(run_dir), resume_command(run_dir)
    if kept is None:
        if not (run_dir / "config.json").is_file():
            message = f"{name} before {run_dir} held anything of the run: run the same command again"
        else:
            message = (f"{name} before the first checkpoint: run the same command again, or {command}, to start it "
                       f"over")
        return Interrupted(message, exit_code(stop))
    epoch, epochs = kept[0], epochs or kept[1]
    if epoch < epochs:
        message = f"{name}: {run_dir / 'last.pt'} (epoch {epoch}) is kept; continue with: {command}"
    elif not (run_dir / "metrics.json").is_file():
        message = (f"{name} after the last epoch: {run_dir} is trained to epoch {epoch} of {epochs} (last.pt and "
                   f"best.pt are kept) but not yet tested, nor its figures drawn; finish it with: {command}")
    else:
        message = f"{name} after {run_dir} was finished (metrics.json is written, figures drawn): nothing is lost"
    return Interrupted(message, exit_code(stop))


def resume_command(run_dir: Path) -> str:
    """The command that continues `run_dir`: with as many processes as it has now (a resume with another number
    is refused), torchrun's form under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return f"python main.py --resume {run_dir}"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    nodes = f"--nnodes {world // per_node} (and your rendezvous flags) " if world > per_node else ""
    return f"torchrun {nodes}--nproc_per_node {per_node} main.py --resume {run_dir}"


def kept_checkpoints(run_dir: Path) -> str:
    """What a run that stopped on a non-finite loss keeps, read from its folder."""
    kept = kept_progress(run_dir)
    if kept is None:
        return "no checkpoint was written (there was no good epoch): start it again with a lower --lr"
    return f"the checkpoints of epoch {kept[0]} and before are kept (last.pt: epoch {kept[0]})"
