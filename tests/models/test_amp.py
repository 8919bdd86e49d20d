"""Mixed precision on the CPU (bf16): a training step stays finite and AFMA stays close to float32."""
import torch

from models import build_model
from utils.losses import AFMALoss


def relative_error(low, high):
    return ((low.float() - high).abs().max() / high.abs().max()).item()


def test_bf16_autocast_matches_float32_within_bf16_tolerance():
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=4, att_depth=2, patch_size=4).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits, attention = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits_bf16, attention_bf16 = model(x)
    assert attention_bf16.image.dtype == torch.bfloat16  # autocast really ran the attention in bf16
    assert relative_error(attention_bf16.dense(), attention.dense()) < 0.05
    assert relative_error(logits_bf16, logits) < 0.05


def test_bf16_training_steps_are_finite_and_the_attention_loss_stays_float32():
    torch.manual_seed(0)
    model = build_model("fpn", "resnet18", None, classes=4, att_depth=3, patch_size=4)
    criterion, attention_only = AFMALoss(), AFMALoss(ce_weight=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, target = torch.randn(2, 3, 64, 96), torch.randint(0, 4, (2, 64, 96))
    for _ in range(3):
        with torch.no_grad():
            reference = attention_only(model(x), target)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(x)
        loss = criterion(output, target)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        mse = attention_only(output, target)
        assert mse.dtype == torch.float32 and abs(mse.item() - reference.item()) < 0.01 * reference.item()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
