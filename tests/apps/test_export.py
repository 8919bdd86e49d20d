"""tools/export.py and utils/apps/export.py: the exported graph against the eager model (its §4 kernels on)."""
import pytest
import torch

from models import build_model
from utils.apps import export as export_app

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def tiny_model(arch, depth):
    torch.manual_seed(0)
    # Patch 5: the image and feature maps leave remainders that are not whole patches at every size below.
    return build_model(arch, "resnet18", None, classes=("a", "b", "void"), att_depth=depth, patch_size=5).eval()


def save_checkpoint(model, path):
    torch.save({"model": model.state_dict(), "model_spec": model.spec.to_dict(), "config": {}}, path)
    return path


def sizes(model):
    """Two sizes the export takes: the smallest, and a larger one with unequal sides."""
    divisor, smallest = export_app.size_range(model)
    return [(smallest, smallest), (smallest + divisor, smallest + 2 * divisor)]


def assert_onnx_matches_eager(model, onnx_bytes):
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["logits"]
    torch.manual_seed(1)
    for batch in (1, 3):
        for height, width in sizes(model):
            x = torch.randn(batch, 3, height, width)
            with torch.no_grad():
                eager = model(x)[0]  # the kernels of models/afma_kernels.py
            (ours,) = session.run(None, {"image": x.numpy()})
            assert ours.shape == eager.shape
            assert abs(torch.from_numpy(ours) - eager).max() < 1e-4


@pytest.mark.e2e
def test_the_command_exports_a_checkpoint_that_onnxruntime_runs_at_any_batch_and_size(tmp_path, capsys):
    model = tiny_model("unet", 1)
    checkpoint = save_checkpoint(model, tmp_path / "best.pt")
    path = export_app.main(["--checkpoint", str(checkpoint)])
    assert path == tmp_path / "model.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "model.onnx"]
    assert "input 'image'" in capsys.readouterr().out
    assert_onnx_matches_eager(model, path.read_bytes())


@pytest.mark.e2e
@pytest.mark.parametrize("arch, depth", [("unet", 3), ("deeplabv3", 1), ("deeplabv3", 3)])
def test_onnx_and_torch_export_match_the_eager_model(arch, depth):
    """deeplabv3: a dilated encoder, stride 8 at depth 3. The torch.export program and its ONNX translation."""
    model = tiny_model(arch, depth)
    program = export_app.export_program(model)
    x = torch.randn(3, 3, *sizes(model)[1])
    with torch.no_grad():
        assert abs(program.module()(x) - model(x)[0]).max() < 1e-4
    onnx_program = torch.onnx.export(program, dynamo=True, input_names=["image"], output_names=["logits"])
    assert_onnx_matches_eager(model, onnx_program.model_proto.SerializeToString())


def test_the_example_input_has_a_batch_of_two_and_unequal_sides():
    """torch.export bakes a size of 1 into the graph: an example batch of 1 gives an ONNX model that onnxruntime
    runs at batch 1 alone."""
    example, shapes = export_app.example_and_shapes(tiny_model("unet", 1))
    assert example.shape[0] == 2 and example.shape[2] != example.shape[3]
    assert set(shapes["image"]) == {0, 2, 3}


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["--checkpoint", str(tmp / "missing.pt")], "missing.pt does not exist"),
    (lambda tmp: ["--checkpoint", str(tmp / "best.pt"), "--output", str(tmp / "no" / "m.onnx")], "does not exist"),
    (lambda tmp: ["--checkpoint", str(tmp / "best.pt"), "--output", str(tmp)], "is a folder"),
])
def test_bad_paths_give_one_line_and_write_nothing(tmp_path, make_args, message):
    save_checkpoint(tiny_model("unet", 1), tmp_path / "best.pt")
    with pytest.raises(SystemExit) as stop:
        export_app.main(make_args(tmp_path))
    text = str(stop.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_onnx_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    save_checkpoint(tiny_model("unet", 1), tmp_path / "best.pt")
    monkeypatch.setattr(export_app, "_importable", lambda name: name != "onnxscript")
    with pytest.raises(SystemExit, match="needs the package.s. onnxscript: pip install -r requirements-dev.txt"):
        export_app.main(["--checkpoint", str(tmp_path / "best.pt")])
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
