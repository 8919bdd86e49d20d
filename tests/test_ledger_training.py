"""The reproduction ledger of docs/METHOD.md §5 (model, optimiser, schedule) says what the code does, and what the
released code did (tests/ledger_released.py)."""
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models import ARCHITECTURES, build_model
from models.architectures import PAPER_ARCHITECTURES
from tests.ledger_released import TRAINING, cell
from utils.config import LR_GAMMA, PAPER, PRESETS, layer_settings
from utils.data.datasets import CamVid
from utils.data.loaders import make_loader
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


def preset_loss_weights(preset: str) -> tuple[float, float]:
    """The loss weights a run of the preset trains with (main.py's constants where the preset names none)."""
    import main

    settings, _ = layer_settings(main.DEFAULTS, {}, preset)
    return settings["ce_weight"], settings["mse_weight"]


def test_loss_and_class_weight_rows_are_the_presets_loss_weights_and_camvid_weights():
    rows = ledger()
    for preset in PRESETS:
        ce_weight, mse_weight = preset_loss_weights(preset)
        assert rows["loss weights"][1] == f"{ce_weight:g} x NLL + {mse_weight:g} x MSE"
    assert rows["class weights (CamVid)"][1] == ", ".join(f"{w:.3f}" for w in CamVid.class_weights)


def test_model_rows_are_the_architecture_table():
    rows, psp = ledger(), ARCHITECTURES["pspnet"]
    s = psp.settings
    assert rows["PSPNet encoder"][1] == (f"encoder_depth {s['encoder_depth']}, output_stride {s['output_stride']}, "
                                         f"upsampling {s['upsampling']}")
    assert psp.first_block_keeps_dilation and "replace_stride_with_dilation=[False, True, True]" in rows["PSPNet dilation"][0]
    assert rows["PSPNet dilation"][1].startswith("the same on Bottleneck ResNets")


HEAD_ROWS = {"pspnet": "PSPNet head", "unet": "UNet head", "unet++": "UNet++ head",
             **dict.fromkeys(("fpn", "linknet", "deeplabv3"), "FPN, LinkNet, DeepLabV3 heads"),
             **dict.fromkeys(("manet", "pan"), "MAnet, PAN heads")}


def built_head(arch):
    return build_model(arch, "resnet18", None, classes=3, att_depth=None).net.segmentation_head[0]


@pytest.mark.parametrize("arch", PAPER_ARCHITECTURES)
def test_head_rows_are_the_built_models(arch):
    """Every architecture has its head row, and the row's kernel is the built model's (FPN, LinkNet and DeepLabV3:
    1x1, in the released code too)."""
    size = built_head(arch).kernel_size[0]
    row = ledger()[HEAD_ROWS[arch]][1]
    assert row.startswith(f"{size}x{size} convolution")
    if arch == "pspnet":
        net = build_model(arch, "resnet18", None, classes=3, att_depth=None).net
        assert f"dropout {net.decoder.dropout.p:g}, {net.decoder.conv[0].out_channels} PSP channels" in row


def test_head_initialisation_row_is_the_built_model_s():
    """SMP's xavier uniform (bound sqrt(6 / (fan_in + fan_out)), zero bias), not the released kaiming uniform
    (bound sqrt(6 / fan_in), larger): the largest of the head's weights sits just under the xavier bound."""
    assert ledger()["head initialisation"][1].startswith("SMP's xavier uniform")
    torch.manual_seed(0)
    head = built_head("unet")
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(head.weight)
    xavier = math.sqrt(6 / (fan_in + fan_out))
    assert 0.95 * xavier < head.weight.abs().max() <= xavier and not head.bias.any()


def test_last_partial_batch_row_is_the_loader_s():
    """Dropped: 9 images in batches of 4 give 2 training steps (the released loader: 3)."""
    assert ledger()["last partial batch"][1].startswith("dropped")
    loader = make_loader(list(range(9)), 4, 0, 0, True, torch.device("cpu"))
    assert len(loader) == 2 and len(make_loader(list(range(9)), 4, 0, 0, False, torch.device("cpu"))) == 3


def test_baseline_loss_row_is_the_loss_without_afma():
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    ce_weight, mse_weight = preset_loss_weights("paper-released")
    loss = AFMALoss(ce_weight=ce_weight, mse_weight=mse_weight)((logits, None), target)
    assert torch.allclose(loss, torch.nn.functional.nll_loss(logits.log_softmax(1), target))
    assert ledger()["baseline loss (no AFMA)"][1] == f"the weighted NLL alone (not scaled by {ce_weight:g})"


def test_released_column_is_the_recorded_released_code():
    """Row for row against tests/ledger_released.py: a row missing, added or changed on either side fails."""
    assert {k: released for k, (released, _) in ledger().items()} == {k: cell(e) for k, e in TRAINING.items()}
