"""--checkpoint FILE: the metrics of a saved model on its data set's val and test splits."""
from __future__ import annotations

from pathlib import Path

from models import build_model
from utils.apps.train import check_sizes, load_splits, log, prepare_run_dir
from utils.config import RunConfig
from utils.data.loaders import make_loader
from utils.engine import distributed
from utils.engine.checkpoint import checkpoint_spec, load_model_state
from utils.engine.device import setup_device
from utils.engine.evaluate import evaluate
from utils.engine.setup import prepare_run
from utils.files import write_json
from utils.reporting.tables import format_table


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
