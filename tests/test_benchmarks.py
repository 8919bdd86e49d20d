"""benchmarks/: tiny end-to-end runs write their markdown tables with consistent numbers and their provenance
(date, machine, commit, command); the GPU defaults and targets; the generated data set; bad requests exit with
one line."""
import re
import subprocess

import cv2
import numpy as np
import pytest
import torch

import main as main_py
from benchmarks import afma_pieces, afma_speed, augment_speed, common, epoch_speed, predict_memory, train_speed
from tests.conftest import ROOT
from utils.data.datasets import CamVid

TINY = ["--size", "32", "64", "--steps", "1", "--warmup", "0", "--encoder", "resnet18", "--patch-size", "4",
        "--no-memory"]


@pytest.fixture
def one_thread():
    """One intra-op thread: the tiny steps gain nothing from more, and lose a lot when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_clock(monkeypatch):
    """Deterministic timings in place of the stopwatch: the tables' arithmetic is then checked exactly, whatever the
    machine's speed or load (a real time can print as 0.0 on a fast CPU). The steps still run where the table
    reports what they compute (the pieces' equality, the FLOP counts)."""
    ticks = iter(range(1, 10**6))

    def seconds_per_step(*args, **kwargs):
        return 0.01 * next(ticks)

    def round_times(steps, device, repeats):
        return [[0.01 * (i + 1) * (1 + 0.1 * r) for i in range(len(steps))] for r in range(repeats)]

    def best_of(steps, repeats):
        return [0.002 * next(ticks) for _ in steps]

    monkeypatch.setattr(train_speed, "seconds_per_step", seconds_per_step)
    monkeypatch.setattr(afma_speed, "round_times", round_times)
    monkeypatch.setattr(afma_pieces, "best_of", best_of)


def table_rows(text, first_column):
    """The markdown table whose header starts with `first_column`: (header, body rows)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header, separator, body = rows[0], rows[1], rows[2:]
    assert all(set(cell) == {"-"} for cell in separator) and len(separator) == len(header)
    assert all(len(row) == len(header) for row in body)
    return header, body


def number(cell):
    return float(cell.rstrip("x"))


def assert_provenance(text, module):
    """The table says when, on what machine, from which code and by which command it was measured."""
    lines = text.splitlines()
    for key in ("date", "machine", "commit"):
        assert any(line.startswith(f"- {key}: ") for line in lines), key
    assert f"- command: `python -m benchmarks.{module}" in text


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


# -------------------------------------------------------------------------------------------- provenance
def test_provenance_names_the_repositorys_commit_the_machine_and_the_command():
    try:
        head, changed = git(ROOT, "rev-parse", "--short", "HEAD"), git(ROOT, "status", "--porcelain", "-uno")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the project is not a git checkout here")
    date, machine, commit, command = common.provenance_lines("benchmarks.x", ["--out", "a b.md"])
    assert re.fullmatch(r"- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", date)
    assert f"{torch.get_num_threads()} torch threads" in machine and f"torch {torch.__version__}" in machine
    assert "Python 3." in machine and "SMP " in machine
    assert commit == f"- commit: {head}" + (" + uncommitted changes" if changed else "")
    assert command == "- command: `python -m benchmarks.x --out 'a b.md'`"


def test_provenance_marks_uncommitted_changes_and_a_folder_outside_git(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("1\n")
    git(repo, "add", "a.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "one")
    head = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "notes.txt").write_text("untracked: not the code measured\n")
    assert common.commit(repo) == head
    (repo / "a.py").write_text("2\n")
    assert common.commit(repo) == f"{head} + uncommitted changes"
    (repo / "sub").mkdir()
    assert common.commit(repo / "sub") == "not a git checkout"  # a folder inside a checkout is not its top
    plain = tmp_path / "plain"
    plain.mkdir()
    assert common.commit(plain) == "not a git checkout"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all
    assert common.commit(repo) == "not a git checkout"


# ------------------------------------------------------------------------------------------- train_speed
@pytest.mark.e2e
def test_train_speed_writes_table(tmp_path, one_thread, fake_clock):
    out = tmp_path / "results" / "x.md"
    printed = train_speed.main(TINY + ["--archs", "unet", "fpn", "--batch-sizes", "1", "2", "--out", str(out)])
    text = out.read_text()
    assert text == printed
    assert "torch " + torch.__version__ in text and "32x64" in text and "resnet18" in text
    assert "uint8 -> Normalizer" in text
    assert_provenance(text, "train_speed")
    header, body = table_rows(text, "arch")
    assert header[:4] == ["arch", "depth", "batch", "precision"]
    # Every arch x batch at the default depth 3, in float32 only (no --amp / --compare-amp).
    expected = [(arch, "3", batch, "fp32") for arch in ("unet", "fpn") for batch in "12"]
    assert [tuple(row[:4]) for row in body] == expected
    column = {name: i for i, name in enumerate(header)}
    for row in body:
        base, afma = number(row[column["baseline ms/step"]]), number(row[column["AFMA ms/step"]])
        assert base > 0 and afma > 0
        assert number(row[column["AFMA / baseline"]]) == pytest.approx(afma / base, abs=0.01)
        assert number(row[column["AFMA img/s"]]) == pytest.approx(1000 * int(row[2]) / afma, rel=0.01)
        assert number(row[column["baseline img/s"]]) == pytest.approx(1000 * int(row[2]) / base, rel=0.01)
        assert row[column["baseline peak MiB"]] == row[column["AFMA peak MiB"]] == "-"  # --no-memory
        assert row[column["target"]].startswith("<= 1.2x: ")
    assert "not checked (run with --compare-amp)" in text and "## AMP" not in text
    assert "AFMA / baseline step time <= 1.2x at depth 3 and <= 1.35x at depth 1: met in" in text


@pytest.mark.e2e
def test_train_speed_compare_amp_shares_the_baseline_between_depths(tmp_path, one_thread, fake_clock):
    text = train_speed.main(TINY + ["--archs", "unet", "--batch-size", "1", "--depths", "1", "3", "--compare-amp",
                                    "--no-tf32", "--out", str(tmp_path / "amp.md")])
    header, body = table_rows(text, "arch")
    assert [(row[1], row[3]) for row in body] == [("1", "fp32"), ("3", "fp32"), ("1", "bf16"), ("3", "bf16")]
    base, ms = header.index("baseline ms/step"), header.index("AFMA ms/step")
    assert body[0][base] == body[1][base] and body[2][base] == body[3][base]  # one baseline per precision
    assert body[0][header.index("target")].startswith("<= 1.35x")
    amp_header, amp_body = table_rows(text[text.index("## AMP (bf16 autocast) vs fp32"):], "arch")
    assert amp_header == ["arch", "depth", "batch", "baseline AMP / fp32", "AFMA AMP / fp32", "target (AFMA)"]
    assert [row[:3] + row[5:] for row in amp_body] == [["unet", "1", "1", "-"], ["unet", "3", "1", "-"]]
    for depth, (fp32, bf16) in enumerate(((body[0], body[2]), (body[1], body[3]))):
        assert number(amp_body[depth][4]) == pytest.approx(number(fp32[ms]) / number(bf16[ms]), abs=0.01)
        assert number(amp_body[depth][3]) == pytest.approx(number(fp32[base]) / number(bf16[base]), abs=0.01)
    assert "AFMA model: no row at batch 4 or 16" in text


def test_train_speed_flags_win_over_the_device_defaults_and_compiling_is_never_timed():
    cuda, cpu = (train_speed.parse_args(["--device", device]) for device in ("cuda", "cpu"))
    assert cuda.out != cpu.out  # a CPU run does not overwrite the GPU's table
    args = train_speed.parse_args(["--device", "cuda", "--batch-size", "3", "--no-channels-last", "--warmup", "0",
                                   "--compile"])
    assert args.batch_sizes == [3] and not args.channels_last
    assert args.warmup == 2  # torch.compile compiles in the first steps: they stay untimed whatever --warmup says


def test_train_speed_targets():
    assert train_speed.ratio_verdict(3, 1.19) == ("<= 1.2x: met", True)
    assert train_speed.ratio_verdict(3, 1.21)[1] is False
    assert train_speed.ratio_verdict(1, 1.3)[1] is True and train_speed.ratio_verdict(1, 1.4)[1] is False
    assert train_speed.ratio_verdict(2, 9.0) == ("-", None)
    assert train_speed.amp_verdict("fpn", 4, 0.99)[1] is False and train_speed.amp_verdict("fpn", 4, 1.0)[1]
    assert train_speed.amp_verdict("unet", 16, 1.39)[1] is False and train_speed.amp_verdict("unet", 16, 1.4)[1]
    assert train_speed.amp_verdict("fpn", 16, 0.5) == ("-", None)  # the batch-16 target is UNet's


def test_invalid_size_exits_with_message(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train_speed.main(["--size", "64", "96", "--archs", "pan", "--out", str(tmp_path / "x.md")])
    assert "pan" in str(exit_info.value) and "128" in str(exit_info.value)
    assert not (tmp_path / "x.md").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("module", [train_speed, afma_speed, epoch_speed])
def test_cuda_without_cuda_exits_with_message(module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--device", "cuda", "--out", str(tmp_path / "x.md")])
    assert "cuda" in str(exit_info.value).lower()
    assert not (tmp_path / "x.md").exists()


# -------------------------------------------------------------------------------------------- afma_speed
@pytest.mark.e2e
def test_afma_speed_writes_table(tmp_path, one_thread, fake_clock):
    out = tmp_path / "afma.md"
    text = afma_speed.main(["--scale", "0.1", "--encoder", "resnet18", "--patch-size", "4", "--repeats", "1",
                            "--kinds", "inference", "--out", str(out)])
    assert out.read_text() == text
    assert_provenance(text, "afma_speed")
    header, body = table_rows(text, "kind")
    assert [(row[0], row[1], int(row[2])) for row in body] == [key for key in afma_speed.TARGETS if key[0] == "inference"]
    column = {name: header.index(name) for name in header}
    for row in body:
        key = (row[0], row[1], int(row[2]))
        assert row[column["size"]] == "64x96" and row[column["batch"]] == "1"
        base, afma = number(row[column["baseline s"]]), number(row[column["AFMA s"]])
        assert min(base, afma) > 0
        # The ratio is printed from the unrounded times: within what the 3-decimal cells allow, widened by its
        # own 2-decimal rounding (no assertion on the timing itself).
        ratio = number(row[column["time ratio"]])
        assert (afma - 5e-4) / (base + 5e-4) - 0.005 <= ratio <= (afma + 5e-4) / (base - 5e-4) + 0.005
        median, low, high = map(float, re.fullmatch(r"([\d.]+)x \(([\d.]+)-([\d.]+)\)",
                                                    row[column["per round: median (range)"]]).groups())
        assert low <= median <= high and low > 0
        assert number(row[column["FLOP ratio"]]) >= 1.0  # AFMA only adds arithmetic to the same network
        target = afma_speed.TARGETS[key]
        assert row[column["target"]] == f"<= {target}x"
        if abs(ratio - target) > 0.005:  # the verdict is taken on the unrounded ratio
            assert row[column["met"]] == ("yes" if ratio < target else "no")


def test_afma_speed_refuses_amp_on_cpu(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        afma_speed.main(["--amp", "--out", str(tmp_path / "x.md")])
    assert "error:" in str(exit_info.value) and not (tmp_path / "x.md").exists()


# ------------------------------------------------------------------------------------------- epoch_speed
def test_make_dataset_writes_camvid_frames(tmp_path):
    counts = {"train": 3, "val": 2, "test": 1}
    # CamVid frames are 960x720 (main.py refuses others).
    description = epoch_speed.make_dataset(tmp_path / "synthetic", counts, (960, 720), "synthetic")
    assert "generated" in description
    for split, count in counts.items():
        data = CamVid(tmp_path / "synthetic", split)
        assert len(data) == count
        data.validate()  # pairs, sizes and label values 0..11 as main.py checks them
    label = cv2.imread(str(tmp_path / "synthetic" / "trainannot" / "train_00000.png"), cv2.IMREAD_UNCHANGED)
    image = cv2.imread(str(tmp_path / "synthetic" / "train" / "train_00000.png"))
    assert label.shape == (720, 960) and image.shape == (720, 960, 3)
    assert len(np.unique(label)) >= 4 and label.max() <= 11  # structured, not one flat class
    # The bundled sample's frames, resized to another frame size.
    assert "bundled sample" in epoch_speed.make_dataset(tmp_path / "sample", {"train": 2}, (96, 72))
    assert cv2.imread(str(tmp_path / "sample" / "train" / "train_00001.png")).shape == (72, 96, 3)


def test_epoch_speed_passes_main_flags_through():
    args = epoch_speed.parse_args(["--device", "cpu", "--arch", "fpn", "--att-depth", "3", "--batch-size", "4",
                                   "--scale", "0.5", "--workers", "3", "--save-every", "0", "--no-amp", "--compile"])
    argv = epoch_speed.main_argv(args, "data", "run")
    parsed, explicit = main_py.parse_args(argv)
    assert explicit == {"data_dir": "data", "epochs": 4, "output_dir": "run", "device": "cpu", "arch": "fpn",
                        "att_depth": "3", "batch_size": 4, "scale": 0.5, "workers": "3", "save_every": 0.0,
                        "amp": False, "compile": True}


@pytest.mark.e2e
def test_epoch_speed_reports_each_epoch(tmp_path, one_thread):
    out = tmp_path / "epoch.md"
    text = epoch_speed.main(["--device", "cpu", "--train", "2", "--val", "2", "--test", "1", "--scale", "0.125",
                             "--encoder", "resnet18", "--patch-size", "4", "--batch-size", "2", "--epochs", "2",
                             "--workers", "0", "--steps", "3", "--warmup", "1", "--loader-passes", "2",
                             "--tmp-dir", str(tmp_path), "--out", str(out)])
    assert out.read_text() == text
    assert_provenance(text, "epoch_speed")
    # the loader alone: 2 timed passes over the 2 training frames (batch 2, the last batch kept as main.py does)
    assert re.search(r"- the training loader alone \(reading, crop, augmentation; 0 workers, no model\): "
                     r"[0-9.]+ images/s over 4 images \(2 passes after a first\)", text)
    assert "unet-resnet18" in text and "training crop 64x96, evaluation 96x128" in text
    header, body = table_rows(text, "epoch")
    assert header == ["epoch", "wall s", "compute s", "efficiency", "cycle s", "compute / cycle"]
    assert [row[0] for row in body] == ["1", "2"]
    assert body[0][4:] == ["-", "-"]  # a cycle runs from the previous epoch's end: none before epoch 1
    for row in body:
        wall, compute, efficiency = map(number, row[1:4])
        assert min(wall, compute, efficiency) >= 0  # real times: nothing about their size is asserted
    cycle, busy = map(number, body[1][4:])
    assert min(cycle, busy) >= 0
    assert cycle >= wall - 0.01  # epoch 2's cycle holds its training and validation (both measured on one clock)
    assert "efficiency >= 0.85 from epoch 2" in text
    assert list(tmp_path.glob("epoch_speed_*")) == []  # the temporary data set and run are gone


# ------------------------------------------------------------------------------------------- afma_pieces
def test_afma_pieces_compares_each_piece_with_its_plain_form(tmp_path, one_thread, fake_clock):
    out = tmp_path / "pieces.md"
    text = afma_pieces.main(["--scale", "0.1", "--patch-size", "4", "--repeats", "1", "--out", str(out)])
    assert out.read_text() == text
    assert_provenance(text, "afma_pieces")
    header, body = table_rows(text, "piece")
    assert len(body) == 5
    for row in body:  # the fake clock's times, printed to 0.1 ms, and their ratio from the unrounded times
        plain, ours = number(row[1]), number(row[2])
        assert plain > 0 and ours > 0 and number(row[3]) == pytest.approx(plain / ours, abs=0.01)
    equal = {row[0].split(" (")[0].split(",")[0]: row[4] for row in body}
    # argmax, the count and the recycled memory change no bit; the layout and the 1x1 product reorder float32 sums
    assert equal["one-hot argmax"] == "yes" and equal["image side and correction"] == "yes"
    assert equal["non-zero count at depth 1"] == "yes"
    assert all(row[4] == "yes" or float(row[4].split()[-1]) < 1e-5 for row in body)


def test_paired_ratios_divide_within_each_round():
    rounds = [[1.0, 1.2], [2.0, 2.2], [1.1, 1.65]]  # [round][baseline, AFMA]
    assert afma_speed.paired_ratios(rounds, afma=1, base=0) == pytest.approx([1.1, 1.2, 1.5])


def test_flops_count_the_int8_count_as_its_float_form():
    from models.afma_kernels import count_row_nonzeros

    image, feature = torch.rand(1, 2, 30, 16), torch.rand(1, 2, 20, 16)
    as_ints = afma_speed.flops(lambda: count_row_nonzeros(image, feature, dtype=torch.int8))
    as_floats = afma_speed.flops(lambda: count_row_nonzeros(image, feature, dtype=torch.float32))
    assert as_ints == as_floats == 2 * (2 * 30) * 16 * 20  # 2 m k n over the (classes x rows) image rows


def test_augment_speed_writes_table(tmp_path):
    """benchmarks.augment_speed times seeded samples of a data set's training pipeline and writes its table."""
    out = tmp_path / "results" / "augment.md"
    augment_speed.main(["--samples", "2", "--datasets", "birds", "--scales", "0.25", "--out", str(out)])
    table = out.read_text()
    assert_provenance(table, "augment_speed")
    assert "| data set | scale | mean ms | median ms |" in table
    assert re.search(r"\| birds \| 0.25 \| [0-9.]+ \| [0-9.]+ \|", table)


def test_augment_speed_times_the_frame_size_it_is_given(tmp_path, monkeypatch):
    """--frame-size HxW is the frame the pipeline receives (Cityscapes' own is 1024x2048), named in the table."""
    shapes, build = [], augment_speed.build_transforms

    class Recording:
        def __init__(self, *args):
            self.pipeline = build(*args)

        def set_random_seed(self, seed):
            self.pipeline.set_random_seed(seed)

        def __call__(self, image, mask):
            shapes.append(image.shape)
            return self.pipeline(image, mask)

    monkeypatch.setattr(augment_speed, "build_transforms", Recording)
    out = tmp_path / "augment.md"
    augment_speed.main(["--samples", "1", "--datasets", "birds", "--scales", "0.25", "--frame-size", "60x80",
                        "--out", str(out)])
    assert shapes and set(shapes) == {(60, 80, 3)}
    assert "a 60x80 (height x width) frame" in out.read_text()
    with pytest.raises(SystemExit):
        augment_speed.main(["--frame-size", "60x0"])


@pytest.mark.e2e
def test_predict_memory_writes_table(tmp_path):
    """Each --tile in its own process (a peak RSS only grows), one row each, under the provenance."""
    out = tmp_path / "memory.md"
    text = predict_memory.main(["--size", "96x64", "--tiles", "0", "64", "--overlap", "16", "--out", str(out)])
    assert out.read_text() == text
    assert_provenance(text, "predict_memory")
    header, body = table_rows(text, "--tile")
    assert [row[0] for row in body] == ["auto (1024)", "64"]
    for row in body:
        assert 0 < number(row[1]) <= number(row[2])  # the peak after segmenting is at least the one before
