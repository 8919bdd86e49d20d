"""benchmarks/train_speed.py: a tiny end-to-end run writes the markdown table; bad requests exit with one line."""
import pytest
import torch

from benchmarks import train_speed

TINY = ["--size", "64", "96", "--steps", "1", "--warmup", "0", "--batch-size", "1", "--encoder", "resnet18",
        "--patch-size", "4", "--no-memory"]


@pytest.fixture
def one_thread():
    """One intra-op thread: the tiny steps gain nothing from more, and lose a lot when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def table_rows(text):
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    header, separator, body = rows[0], rows[1], rows[2:]
    assert all(set(cell) == {"-"} for cell in separator)
    return header, body


def test_train_speed_writes_table(tmp_path, one_thread):
    out = tmp_path / "results" / "x.md"
    printed = train_speed.main(TINY + ["--archs", "unet", "fpn", "--out", str(out)])
    text = out.read_text()
    assert text == printed
    assert "torch " + torch.__version__ in text and "64x96" in text and "resnet18" in text
    header, body = table_rows(text)
    assert header[:2] == ["arch", "baseline img/s"] and "AFMA img/s" in header and "AFMA peak MiB" in header
    assert [row[0] for row in body] == ["unet", "fpn"]
    for row in body:
        assert len(row) == len(header)
        for column, cell in zip(header[1:], row[1:]):
            if "MiB" in column:
                assert cell == "-"  # --no-memory
            else:
                assert float(cell.rstrip("x")) > 0, (column, cell)


def test_invalid_size_exits_with_message(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train_speed.main(["--size", "64", "96", "--archs", "pan", "--out", str(tmp_path / "x.md")])
    assert "pan" in str(exit_info.value) and "128" in str(exit_info.value)
    assert not (tmp_path / "x.md").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_exits_with_message(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train_speed.main(["--device", "cuda", "--out", str(tmp_path / "x.md")])
    assert "cuda" in str(exit_info.value).lower()
