"""CUDA: the same numbers as the CPU in float64, mixed precision within its tolerance, channels_last, the fp16
GradScaler path, main.py with --amp, and main.py under torchrun and in an NCCL process group. Skipped where
there is no CUDA device.

Tolerances (max_error: max |a - b| / max |b|; norm_error: ||a - b|| / ||b||, Frobenius):
- float64, CUDA vs CPU: logits, loss and every gradient, max_error < 1e-9 (only the order of summation differs);
- autocast vs float32 (TF32 off), random-init UNet-ResNet18: loss max_error < 5e-2; logits norm_error < 0.15 in
  bf16 and < 3e-2 in fp16. The CPU's own bf16 / fp16 autocast gives 0.06-0.075 and ~0.01 on this model, and the
  plain UNet's logits (before AFMA) alone show the same: it is 8 (11) bits of mantissa through ~20 layers, not
  AFMA; the loss agrees to ~1e-4;
- channels_last vs contiguous (float32, TF32 off): logits and loss max_error < 1e-4; gradients norm_error
  < 2e-2 (a weight's gradient sums over every pixel and, at random init, cancels heavily: the CPU's own
  channels_last kernels differ from its NCHW ones by up to 6e-3 there);
- AFMALoss inside an fp16 autocast block vs outside it: < 1e-3.
Runs in well under two minutes on one GPU (most of it in the three main.py runs).
"""
import copy
import csv
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

import main
from models import build_model
from tests.conftest import FAST, ROOT
from utils.engine.setup import prepare
from utils.engine.train import train_one_epoch
from utils.losses import AFMALoss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CLASSES = 4
SIZE = (64, 96)


def max_error(value, reference) -> float:
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    return ((value - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()


def norm_error(value, reference) -> float:
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    return ((value - reference).norm() / reference.norm().clamp_min(1e-30)).item()


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_model("unet", "resnet18", None, classes=CLASSES, att_depth=2, patch_size=4)


def batch(dtype=torch.float32, seed=0, size=SIZE, n=2):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, *size, generator=generator, dtype=torch.float64).to(dtype)
    target = torch.randint(0, CLASSES, (n, *size), generator=generator)
    return x, target


def forward_backward(model, criterion, x, target, amp_dtype=None):
    """Logits, loss and every parameter's gradient of one training-mode step."""
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        output = model(x)
        loss = criterion(output, target)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return output[0].detach(), loss.detach(), grads


@pytest.fixture
def exact_float32():
    """TF32 off (float32 products in float32), restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_float64_cuda_equals_cpu_forward_and_backward():
    cpu_model = tiny_model().double().train()
    cuda_model = copy.deepcopy(cpu_model).cuda()
    criterion = AFMALoss(class_weights=[0.5, 1.0, 2.0, 1.0])
    x, target = batch(torch.float64)
    cpu = forward_backward(cpu_model, criterion, x, target)
    gpu = forward_backward(cuda_model, criterion.cuda(), x.cuda(), target.cuda())
    assert gpu[0].dtype == gpu[1].dtype == torch.float64
    assert max_error(gpu[0], cpu[0]) < 1e-9
    assert max_error(gpu[1], cpu[1]) < 1e-9
    assert set(gpu[2]) == set(cpu[2]) and len(cpu[2]) > 50
    assert "afma.transform.0.weight" in cpu[2]  # the attention's own parameters are compared too
    for name, grad in cpu[2].items():
        assert max_error(gpu[2][name], grad) < 1e-9, name


@pytest.mark.parametrize("amp_dtype, logits_tolerance", [(torch.bfloat16, 0.15), (torch.float16, 3e-2)])
def test_autocast_is_close_to_float32(amp_dtype, logits_tolerance, exact_float32):
    model = tiny_model().cuda().train()
    criterion = AFMALoss().cuda()
    x, target = (t.cuda() for t in batch())
    logits, loss, _ = forward_backward(model, criterion, x, target)
    low_logits, low_loss, grads = forward_backward(model, criterion, x, target, amp_dtype)
    assert low_loss.dtype == torch.float32 and torch.isfinite(low_loss)
    assert all(torch.isfinite(g).all() for g in grads.values())
    with torch.no_grad(), torch.autocast("cuda", dtype=amp_dtype):
        assert model(x)[1].image.dtype == amp_dtype  # autocast really ran the model in low precision
    assert norm_error(low_logits, logits) < logits_tolerance
    assert max_error(low_loss, loss) < 5e-2


def test_channels_last_equals_contiguous(exact_float32):
    model = tiny_model().cuda().train()
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    criterion = AFMALoss().cuda()
    x, target = (t.cuda() for t in batch())
    dense = forward_backward(model, criterion, x, target)
    nhwc = forward_backward(last, criterion, x.contiguous(memory_format=torch.channels_last), target)
    assert last.net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert max_error(nhwc[0], dense[0]) < 1e-4
    assert max_error(nhwc[1], dense[1]) < 1e-4
    for name, grad in dense[2].items():
        assert norm_error(nhwc[2][name], grad) < 2e-2, name


def test_afma_loss_in_an_fp16_autocast_block_is_float32(exact_float32):
    model = tiny_model().cuda().train()
    criterion = AFMALoss().cuda()
    x, target = (t.cuda() for t in batch())
    with torch.no_grad():
        output = model(x)  # float32 logits and attention
        reference = criterion(output, target)
        with torch.autocast("cuda", dtype=torch.float16):
            inside = criterion(output, target)
            half_output = model(x)  # autocast's fp16 model output
            half_inside = criterion(half_output, target)
        half_outside = criterion(half_output, target)
    assert half_output[1].image.dtype == torch.float16  # the attention factors (and so the MSE's inputs) in fp16
    for loss in (inside, half_inside):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert max_error(inside, reference) < 1e-3
    # With fp16 inputs the loss is computed from them in float32, the same inside autocast or not.
    assert max_error(half_inside, half_outside) < 1e-3
    assert max_error(half_inside, reference) < 5e-2


def test_fp16_grad_scaler_training_steps():
    model = tiny_model()
    # fp16 with its GradScaler even where the device has bf16 (which prepare would choose for --amp).
    engine = dataclasses.replace(prepare(model, torch.device("cuda")), amp_dtype=torch.float16,
                                 scaler=torch.amp.GradScaler("cuda"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    loader = [(torch.randint(0, 256, (2, 3, *SIZE), dtype=torch.uint8, generator=generator),
               torch.randint(0, CLASSES, (2, *SIZE), dtype=torch.uint8, generator=generator)) for _ in range(4)]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = train_one_epoch(model, engine, optimizer, loader, 1)
    assert loss > 0 and torch.isfinite(torch.tensor(loss))
    assert 0 < engine.scaler.get_scale() <= 2.0**16  # an overflowing step halves the scale and is skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())
    changed = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert "afma.transform.0.weight" in changed and len(changed) > len(before) // 2  # the steps were taken


def read_history(run_dir):
    with (run_dir / "history.csv").open() as file:
        return list(csv.DictReader(file))


def test_main_one_epoch_on_cuda_with_amp(tiny_camvid, tmp_path):
    out = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--device", "cuda", "--amp",
                      "--output-dir", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["device"] == "cuda" and config["amp"] is True
    assert config["device_name"] == torch.cuda.get_device_name()
    rows = read_history(out)
    assert [row["epoch"] for row in rows] == ["1"] and float(rows[0]["train_loss"]) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test"]["miou"] <= 1 and torch.isfinite(torch.tensor(metrics["test"]["loss"]))
    best = torch.load(out / "best.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in best["model"].values() if v.is_floating_point())


def run_python(args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_torchrun_single_process_on_cuda(tiny_camvid, tmp_path):
    """The launch path: torchrun's environment on one GPU (with one process main.py needs no process group)."""
    out = tmp_path / "torchrun"
    result = run_python(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "main.py", *FAST,
                         "--data-dir", str(tiny_camvid), "--epochs", "1", "--device", "cuda", "--output-dir", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["device"] == "cuda"
    assert [row["epoch"] for row in read_history(out)] == ["1"] and (out / "metrics.json").is_file()


NCCL_RUN = """
import sys
import torch.distributed as dist
import main
from utils.engine import distributed
dist.init_process_group("nccl", init_method="file://" + sys.argv[1], rank=0, world_size=1)
assert distributed.is_distributed() and dist.get_backend() == "nccl"
sys.exit(main.main(sys.argv[2:]))
"""


def test_nccl_process_group_run(tiny_camvid, tmp_path):
    """main.py's loop inside an NCCL process group (of one process: NCCL refuses two ranks on one GPU): DDP,
    SyncBatchNorm, the sharded evaluation and the all-reduces all run through NCCL."""
    out = tmp_path / "nccl"
    result = run_python(["-c", NCCL_RUN, str(tmp_path / "rendezvous"), *FAST, "--data-dir", str(tiny_camvid),
                         "--epochs", "1", "--device", "cuda", "--amp", "--output-dir", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 1 and config["device"] == "cuda"
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(map(sum, metrics["val"]["confusion_matrix"])) == 2 * 90 * 120  # every val frame pixel once, no padding
    last = torch.load(out / "last.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in last["model"])  # saved unwrapped, loadable without DDP
