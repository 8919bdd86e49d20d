"""The one engine setup of training, evaluation and the benchmarks: the model in its inputs' layout, the
normaliser of its own spec, autocast and the GradScaler only where fp16 needs it."""
import torch

from models import build_model
from utils.engine.setup import prepare

MEAN, STD = (0.5, 0.25, 0.125), (0.5, 0.5, 0.25)


def tiny():
    return build_model("unet", "resnet18", None, classes=3, att_depth=None, mean=MEAN, std=STD)


def test_prepare_normalises_with_the_models_own_spec_in_its_layout():
    model = tiny()
    engine = prepare(model, torch.device("cpu"), channels_last=True)
    images = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    x = engine.normalizer(images)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([(1 - m) / s for m, s in zip(MEAN, STD)]))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert model.net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain = tiny()
    engine = prepare(plain, torch.device("cpu"))  # the CPU default: contiguous, as the normaliser's
    assert engine.normalizer.memory_format == torch.contiguous_format
    assert not plain.net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_prepare_autocasts_only_with_amp_and_scales_no_bf16_loss():
    assert prepare(tiny(), torch.device("cpu")).amp_dtype is None
    engine = prepare(tiny(), torch.device("cpu"), amp=True, class_weights=[1.0, 2.0, 0.5])
    assert engine.amp_dtype == torch.bfloat16 and engine.scaler is None  # the CPU's autocast is bf16
    assert engine.criterion.class_weights.tolist() == [1.0, 2.0, 0.5]
    output, loss, targets = engine.forward(tiny().eval(), torch.zeros((1, 3, 32, 32), dtype=torch.uint8),
                                           torch.zeros((1, 32, 32), dtype=torch.uint8))
    assert output[0].dtype == torch.bfloat16 and loss.dtype == torch.float32 and targets.dtype == torch.int64
