"""The reproduction ledger of docs/METHOD.md §5 (model, optimiser, schedule) says what the code does."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models import ARCHITECTURES, build_model
from utils.config import LR_GAMMA, PAPER, PRESETS
from utils.data.datasets import CamVid
from utils.losses import AFMALoss

METHOD = Path(__file__).resolve().parents[1] / "docs" / "METHOD.md"
LR = f"{PAPER['lr']:.0e}".replace("e-0", "e-")  # 1e-4, as the ledger writes it


def ledger() -> dict[str, tuple[str, str]]:
    """setting -> (released code, this project), from the table under "Model, optimiser and schedule"."""
    text = METHOD.read_text().split("### Model, optimiser and schedule", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): (cells[1].strip(), cells[2].strip()) for cells in rows[1:]}


def test_schedule_epochs_rate_and_batch_rows_are_the_presets():
    rows = ledger()
    assert set(PRESETS) == {"paper-released", "paper-declared"}
    assert rows["learning rate"][1] == LR and rows["epochs"][1] == str(PAPER["epochs"])
    assert rows["batch"][1].startswith(f"{PAPER['batch_size']} global")
    schedule = rows["LR schedule"][1]
    assert PRESETS["paper-released"]["milestones"] == "" and f"`paper-released`: constant {LR}" in schedule
    declared = PRESETS["paper-declared"]["milestones"].replace(",", ", ")
    assert f"`paper-declared`: x{LR_GAMMA:g} at epochs {declared}" in schedule
    assert f"milestones=[{declared}], gamma={LR_GAMMA:g}" in rows["LR schedule"][0]


def test_optimizer_and_schedule_rows_are_what_training_builds():
    from utils.apps.train import optimisation

    config = SimpleNamespace(lr=1e-4, milestones=(2, 3))
    optimizer, scheduler = optimisation(torch.nn.Linear(2, 2), config)
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["weight_decay"] == 0
    assert ledger()["optimizer"][1] == "Adam, weight decay 0"
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1e-4, 1e-4, LR_GAMMA * 1e-4, LR_GAMMA ** 2 * 1e-4])  # halved at each milestone


def test_loss_and_class_weight_rows_are_the_loss_defaults_and_camvid_weights():
    rows, loss = ledger(), AFMALoss()
    assert rows["loss weights"][1] == f"{loss.ce_weight:g} x NLL + {loss.mse_weight:g} x MSE"
    assert rows["class weights (CamVid)"][1] == ", ".join(f"{w:.3f}" for w in CamVid.class_weights)


def test_model_rows_are_the_architecture_table():
    rows, psp = ledger(), ARCHITECTURES["pspnet"]
    s = psp.settings
    assert rows["PSPNet encoder"][1] == (f"encoder_depth {s['encoder_depth']}, output_stride {s['output_stride']}, "
                                         f"upsampling {s['upsampling']}")
    assert psp.first_block_keeps_dilation and "replace_stride_with_dilation=[False, True, True]" in rows["PSPNet dilation"][0]
    assert rows["PSPNet dilation"][1].startswith("the same on Bottleneck ResNets")
    k = ARCHITECTURES["unet++"].head_kernel_size
    assert rows["UNet++ head"] == ("1x1 convolution", f"{k}x{k} convolution")
    assert all(a.head_kernel_size is None for name, a in ARCHITECTURES.items() if name != "unet++")


@pytest.mark.parametrize("arch", ["pspnet", "unet"])
def test_head_rows_are_the_built_models(arch):
    net = build_model(arch, "resnet18", None, classes=3, att_depth=None).net
    size = net.segmentation_head[0].kernel_size[0]
    row = ledger()["PSPNet head" if arch == "pspnet" else "other heads"][1]
    assert row.startswith(f"{size}x{size} convolution")
    if arch == "pspnet":
        assert f"dropout {net.decoder.dropout.p:g}, {net.decoder.conv[0].out_channels} PSP channels" in row
