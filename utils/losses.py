"""The AFMA training loss (docs/METHOD.md §3): ce_weight x weighted NLL(log_softmax(z')) + mse_weight x MSE(AFMA, gold)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.afma import FactoredAttention, attention_mse, factored_gold, one_hot
from utils.labels import IGNORE_LABEL

# The paper's weights of the two terms (§3): AFMALoss's defaults, for the loss used in one's own code. A run of
# main.py does not rely on them: its loss takes the run's --ce-weight / --mse-weight (utils.engine.setup.prepare_run),
# whose default is main.py's CE_WEIGHT / MSE_WEIGHT.
PAPER_LOSS_WEIGHTS = {"ce_weight": 5.0, "mse_weight": 1.0}


class AFMALoss(nn.Module):
    """Called as `loss((logits, attention), target)` with exactly what the model returned.

    target: (B, H, W) class indices; the one-hot for the gold AFMA is made here, on the target's device, and
    the patch size and stride come from the attention itself, so they cannot disagree with the model's.
    With AFMA off (attention None) it is the weighted NLL alone (not scaled by ce_weight), the baseline loss.
    Pixels of `ignore_index` are left out of the NLL. In the MSE they are not left out: their one-hot is all
    zeros, so the gold AFMA counts them in no class, while the model's AFMA there is still compared with it (the
    mean runs over every patch pair), which pulls the attention of padded patches towards zero. It defaults to
    IGNORE_LABEL, the value of every pixel the data does not hold (padding), so every caller (training,
    evaluation, benchmarks) treats padding so without saying so; None keeps every pixel in the NLL.

    `ce_weight`, `mse_weight`: the terms' weights, by default the paper's (PAPER_LOSS_WEIGHTS).

    Computed outside autocast, in float32 at least (float64 inputs stay float64), wherever it is called: the
    MSE of small attention values would lose its digits in 16 bits.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | Tensor | None = None,
        ce_weight: float = PAPER_LOSS_WEIGHTS["ce_weight"],
        mse_weight: float = PAPER_LOSS_WEIGHTS["mse_weight"],
        ignore_index: int | None = IGNORE_LABEL,
    ):
        super().__init__()
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights)
        self.ce_weight = ce_weight
        self.mse_weight = mse_weight
        self.ignore_index = ignore_index

    def forward(self, output: tuple[Tensor, FactoredAttention | None], target: Tensor) -> Tensor:
        logits, attention = output
        dtype = torch.promote_types(logits.dtype, torch.float32)
        with torch.autocast(logits.device.type, enabled=False):
            weight = None if self.class_weights is None else self.class_weights.to(dtype)
            nll = F.nll_loss(
                F.log_softmax(logits.to(dtype), dim=1),
                target,
                weight=weight,
                ignore_index=-100 if self.ignore_index is None else self.ignore_index,
            )
            if attention is None:
                return nll
            gold = factored_gold(one_hot(target, logits.shape[1], dtype), attention.stride, attention.patch_size)
            return self.ce_weight * nll + self.mse_weight * attention_mse(attention, gold)
