"""torch.compile: AFMA's plain path (models/afma.py) is one graph, in an eval forward and in a training step."""
import pytest
import torch
import torch._dynamo as dynamo

from models import build_model
from utils.losses import AFMALoss


def breaks_in_afma(explanation):
    """The graph breaks whose user code runs through models/afma.py or models/afma_kernels.py."""
    return [reason.reason for reason in explanation.break_reasons
            if any("models/afma" in frame.filename for frame in reason.user_stack)]


@pytest.fixture
def model_and_batch():
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=4)
    return model, torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))


@pytest.mark.e2e
def test_an_eval_forward_and_a_training_step_compile_without_a_graph_break_in_afma(model_and_batch):
    model, x, target = model_and_batch
    criterion = AFMALoss()
    dynamo.reset()
    with torch.no_grad():
        forward = dynamo.explain(lambda image: model.eval()(image)[0])(x)
    dynamo.reset()
    step = dynamo.explain(lambda image, labels: criterion(model.train()(image), labels))(x, target)
    for explanation in (forward, step):
        assert explanation.graph_count >= 1 and breaks_in_afma(explanation) == []
        # SMP 0.6.0's UNet-ResNet18 adds none either: the whole model is one graph.
        assert explanation.graph_break_count == 0, [reason.reason for reason in explanation.break_reasons]


@pytest.mark.e2e
def test_the_module_alone_is_one_graph_and_a_compiled_training_step_gives_the_eager_gradients(model_and_batch):
    """AOTAutograd traces the backward of the plain path too: the same loss and gradients as the eager kernels."""
    model, x, target = model_and_batch
    afma, features = model.afma, model.net.encoder(x)
    logits = model.net.segmentation_head(model.net.decoder(features)).detach()

    def afma_step(image, feature, z):
        attention = afma(image, feature)
        return afma.correct(z, attention).square().mean() + attention.row_sum().mean()

    dynamo.reset()
    assert dynamo.explain(afma_step)(x, features[2].detach(), logits).graph_break_count == 0
    criterion = AFMALoss()
    results = []
    for compiled in (False, True):
        model.zero_grad()
        step = torch.compile(lambda image: criterion(model(image), target), backend="aot_eager") if compiled \
            else (lambda image: criterion(model(image), target))
        loss = step(x)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.afma.parameters()])
    for eager, compiled in zip(*results):
        assert torch.allclose(compiled, eager, rtol=1e-4, atol=1e-6)
