"""The network a run trains or evaluates: built from its config (the pretrained weights fetched, or the random-init
fallback) and checked against the splits it will be fed, before any run folder is written. Shared by training,
evaluating a checkpoint and --compare."""
from __future__ import annotations

import math

from models import ARCHITECTURES, WeightsUnavailable, build_model
from utils.config import RunConfig, input_normalisation
from utils.engine import distributed
from utils.engine.distributed import log
from utils.errors import UsageError


def build_network(config: RunConfig, pretrained: bool = True):
    """The model, and the config with the normalisation its weights expect (their config, from the hub). The one
    place of the fallback: if the weights cannot be fetched and --allow-random-init is on, random initialisation."""
    weights = config.encoder_weights if pretrained else None  # a resumed run's come from last.pt, and its spec
    if weights is None:
        return build_model(**config.model.to_dict()), config
    try:
        mean, std = input_normalisation(config.dataset, config.model.encoder_name, weights, config.model.in_channels,
                                        config.mean, config.std)
        if config.model.in_channels != 3:
            log(f"note: --in-channels {config.model.in_channels} with {weights} weights: SMP adapts the encoder's "
                f"first convolution (1 channel: the RGB filters summed; N: the RGB filters in turn, scaled by 3/N); "
                f"the AFMA image branch starts from random weights as always")
        fetched = config.replace(model=config.model.replace(mean=mean, std=std))
        return build_model(encoder_weights=weights, **fetched.model.to_dict()), fetched
    except WeightsUnavailable as error:
        if not config.allow_random_init:
            raise UsageError(f"{error} (or pass --allow-random-init to fall back to it)") from None
        log(f"warning: {error}; --allow-random-init: training from random initialisation instead")
        sources = config.sources | {"encoder_weights": "--allow-random-init (the weights could not be fetched)"}
        return build_model(**config.model.to_dict()), config.replace(encoder_weights=None, sources=sources)


def check_sizes(model, splits: dict, config: RunConfig) -> None:
    """Every split's network input must suit the model: say so now, with the flag that fixes it."""
    for split, data in splits.items():
        check_size(model, split, data[0][0].shape[-2:], config)
    # DeepLabV3(+)'s, UPerNet's and PAN's pooling batch-normalises a 1x1 map: a batch of one has one value per channel.
    if "train" not in splits:  # evaluating a checkpoint: no training batches
        return
    per_process = math.ceil(len(splits["train"]) / distributed.world_size())
    if ARCHITECTURES[config.model.arch].batch_norm_pooling and min(config.batch_size, per_process) < 2:
        raise UsageError(f"--arch {config.model.arch} trains on batches of 2 or more images (its image pooling is "
                         f"batch-normalised): give --batch-size 2 or more")


def check_size(model, split: str, size, config: RunConfig) -> None:
    try:
        model.check_input_size(*size)
    except ValueError as error:
        raise UsageError(f"{config.model.arch}: the {split} crop of --dataset {config.dataset} at --scale "
                         f"{config.model.scale}: {error}; choose another --scale") from None
