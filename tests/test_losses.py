"""AFMALoss against values computed by hand."""
import math

import torch

from models.afma import FactoredAttention
from utils.losses import AFMALoss


def tiny_case():
    """1 image, 2 classes, 1x2 pixels, patch 1, stride 1: small enough to do on paper."""
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3), 0.0]]]])  # pixel 0: softmax (1/4, 3/4); pixel 1: (1/2, 1/2)
    target = torch.tensor([[[1, 0]]])
    # AFMA_0 = [1, 0]^T [0, 2] = [[0, 2], [0, 0]]; AFMA_1 = [1, 1]^T [1, 1] = all ones.
    image = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 2, 2, 1)
    feature = torch.tensor([[0.0, 2.0], [1.0, 1.0]]).view(1, 2, 2, 1)
    return logits, FactoredAttention(image, feature, grid=(1, 2), stride=1), target


def test_loss_equals_hand_computed_value():
    logits, attention, target = tiny_case()
    # Weighted NLL: (w1 * -ln(3/4) + w0 * ln 2) / (w1 + w0) with w = (1, 2).
    nll = (2 * math.log(4 / 3) + math.log(2)) / 3
    # Gold_0 = [[0, 0], [0, 1]], gold_1 = [[1, 0], [0, 0]]: squared errors 4 + 1 and 1 + 1 + 1 over 8 entries.
    mse = 8 / 8
    loss = AFMALoss(class_weights=[1.0, 2.0])((logits, attention), target)
    assert abs(loss.item() - (5 * nll + mse)) < 1e-6
    dense = AFMALoss(class_weights=[1.0, 2.0], ce_weight=0.0)((logits, attention), target)
    assert abs(dense.item() - mse) < 1e-6


def test_baseline_loss_is_the_weighted_nll_alone():
    logits, _, target = tiny_case()
    loss = AFMALoss(class_weights=[1.0, 2.0])((logits, None), target)
    assert abs(loss.item() - (2 * math.log(4 / 3) + math.log(2)) / 3) < 1e-6


def test_an_ignored_pixel_leaves_the_nll_but_its_attention_entries_stay_in_the_mse():
    logits, attention, _ = tiny_case()
    target = torch.tensor([[[1, 255]]])
    loss = AFMALoss(ignore_index=255)((logits, attention), target)
    # NLL over pixel 0 only: ln(4/3). Gold_1 = [[1, 0], [0, 0]], gold_0 = 0: errors 4 and 1 + 1 + 1 over 8.
    assert abs(loss.item() - (5 * math.log(4 / 3) + 7 / 8)) < 1e-6


def random_case(dtype=torch.float32):
    from models import build_model

    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=4, att_depth=2, patch_size=4).to(dtype)
    x, target = torch.randn(2, 3, 64, 96, dtype=dtype), torch.randint(0, 4, (2, 64, 96))
    return model, x, target


def test_loss_inside_an_fp16_autocast_block_is_the_float32_loss():
    """PyTorch's AMP recipe computes the loss inside autocast: the attention MSE must not drop to 16 bits."""
    model, x, target = random_case()
    with torch.no_grad():
        output = model(x)
    reference = AFMALoss()(output, target)
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", dtype=dtype):
            inside = AFMALoss()(output, target)
            mse = AFMALoss(ce_weight=0.0)(output, target)
        assert inside.dtype == torch.float32 and torch.isfinite(inside) and mse > 0
        assert abs(inside.item() - reference.item()) < 1e-6 * reference.item()


def test_loss_keeps_float64():
    model, x, target = random_case(torch.float64)
    loss = AFMALoss(class_weights=[1.0, 2.0, 3.0, 4.0])(model(x), target)
    assert loss.dtype == torch.float64
    loss.backward()
    assert all(p.grad.dtype == torch.float64 for p in model.parameters() if p.grad is not None)


def test_the_patch_size_comes_from_the_attention():
    image, feature = torch.rand(1, 2, 6, 9), torch.rand(1, 2, 6, 9)  # 3x3 patches: P = 9
    attention = FactoredAttention(image, feature, grid=(2, 3), stride=1)
    assert attention.patch_size == 3
    target = torch.randint(0, 2, (1, 6, 9))
    loss = AFMALoss(ce_weight=0.0)((torch.zeros(1, 2, 6, 9), attention), target)
    from models.afma import gold_afma, one_hot

    expected = ((attention.dense() - gold_afma(one_hot(target, 2), 1, 3)) ** 2).mean()
    assert abs(loss.item() - expected.item()) < 1e-6
