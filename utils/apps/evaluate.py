"""--checkpoint FILE: the metrics of a saved model on its data set's val and test splits."""
from __future__ import annotations

from pathlib import Path

from models import build_model
from utils.config import CROP_SIZES, RunConfig, check_checkpoint_flags, check_unused, layer_settings, make_config
from utils.data.loaders import load_splits, make_loader
from utils.engine import distributed
from utils.engine.checkpoint import checkpoint_spec, load_checkpoint, load_model_state
from utils.engine.device import setup_device
from utils.engine.distributed import log
from utils.engine.evaluate import evaluate
from utils.engine.setup import prepare_run
from utils.errors import CheckpointError
from utils.files import write_json
from utils.network import check_sizes
from utils.reporting.tables import format_table
from utils.run_folder import prepare_run_dir, saved_config


def checkpoint_run(args, explicit: dict, defaults: dict) -> tuple[RunConfig, Path, dict]:
    """The config of evaluating --checkpoint: its model and scale, the flags' data, device and output (`defaults`:
    main.py's); with the checkpoint's path and its loaded state."""
    path = Path(args.checkpoint)
    check_unused(explicit, "evaluate", f"--checkpoint {path} evaluates the model it holds", args.preset)
    state = load_checkpoint(path)
    spec = checkpoint_spec(state, path)
    check_checkpoint_flags(spec, explicit, path)
    saved = saved_config(state["config"], path).settings()
    # What describes the data and the model comes from the checkpoint; how to run, from this machine's defaults.
    for key in ("device", "workers", "tf32", "compile", "output_dir"):
        saved.pop(key)
    saved["encoder_weights"] = "none"  # the weights are the file's: nothing to download
    if explicit.get("dataset", saved["dataset"]) != saved["dataset"]:  # another data set: at its own crop sizes
        saved |= dict.fromkeys(CROP_SIZES, "")
    settings, sources = layer_settings(defaults, explicit, saved=saved, saved_source="checkpoint")
    config = make_config(settings, sources, saved_data=spec.dataset_params)
    if tuple(config.classes) != tuple(spec.classes):
        raise CheckpointError(f"--dataset {config.dataset} has the classes {list(config.classes)}, but {path} was "
                              f"trained on {list(spec.classes)}: evaluate it on a data set with the same classes")
    sizes = dict(dataset=config.dataset, dataset_params=config.model.dataset_params, scale=config.model.scale,
                 train_size=config.model.train_size, eval_size=config.model.eval_size)
    return config.replace(model=spec.replace(**sizes)), path, state


def evaluate_checkpoint(config: RunConfig, path: Path, state: dict) -> dict:
    """Evaluate the checkpoint's model as `config` says (its data, scale and device; all ranks share the work).

    metrics.json (into --output-dir when given) records what was evaluated and at which scale.
    """
    device = setup_device(config.device, config.seed, config.deterministic, config.tf32)
    model = build_model(**config.model.to_dict())
    load_model_state(model, state, path)
    splits = load_splits(config, ("val", "test"))
    check_sizes(model, splits, config)
    out_dir = prepare_run_dir(config, training=False) if config.output_dir else None
    trained_scale = checkpoint_spec(state, path).scale
    if config.model.scale != trained_scale:
        log(f"note: evaluating at --scale {config.model.scale}; {path} was trained at scale {trained_scale}")
    engine = prepare_run(model, device, config)
    results = {split: evaluate(model, engine, make_loader(data, config.batch_size, config.workers, config.seed, False,
                                                          device, persistent=False), config.classes,
                               small_objects=True, desc=split)
               for split, data in splits.items()}
    log(f"\n{path} (epoch {state['epoch']}, scale {config.model.scale}):\n" + format_table(results, config.classes))
    if out_dir and distributed.is_main():
        evaluation = {"checkpoint": str(path), "epoch": state["epoch"], "dataset": config.dataset,
                      "data_dir": config.data_dir, "scale": config.model.scale, "trained_scale": trained_scale}
        write_json(out_dir / "metrics.json", {**results, "evaluation": evaluation})
    return results
