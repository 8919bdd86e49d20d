"""Settings that cannot work are refused in one line naming the flag: a loss that cannot train, a seed out of
range, a --data-dir that is a file."""
import pytest

import main
from tests.conftest import FAST
from utils.errors import UsageError


def new_run(*argv):
    args, explicit = main.parse_args([*argv, "--encoder", "resnet18", "--scale", "0.25"])
    return main.new_run(args, explicit)


@pytest.mark.parametrize("argv, words", [
    (["--ce-weight", "0", "--mse-weight", "0"], "--ce-weight 0 --mse-weight 0 is not valid: the loss would be 0"),
    (["--ce-weight", "-1"], "--ce-weight -1.0 is not valid"),
    (["--mse-weight", "nan"], "--mse-weight nan is not valid"),
    (["--ce-weight", "inf"], "--ce-weight inf is not valid"),
])
def test_a_loss_that_cannot_train_is_refused_in_one_line(tmp_path, capsys, argv, words):
    assert main.main([*FAST, "--output-dir", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {words}") and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_what_can_train_is_taken_one_weight_zero_and_the_baseline_which_trains_on_the_nll_alone():
    assert new_run("--ce-weight", "0").mse_weight == 1.0
    assert new_run("--mse-weight", "0").ce_weight == 5.0
    assert new_run("--att-depth", "off", "--ce-weight", "0", "--mse-weight", "0").model.att_depth is None


@pytest.mark.parametrize("seed", ["18446744073709551616", "4294967296", "-1"])
def test_a_seed_out_of_range_is_one_line_naming_the_range(tmp_path, capsys, seed):
    assert main.main([*FAST, "--output-dir", str(tmp_path / "run"), "--seed", seed]) == 2
    assert capsys.readouterr().err == f"error: --seed {seed} is not valid: it must be between 0 and 4294967295 " \
                                      f"(2**32 - 1)\n"


def test_the_largest_seed_is_taken():
    assert new_run("--seed", "4294967295").seed == 2**32 - 1


def test_a_data_dir_that_is_a_file_is_called_a_file(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"")
    with pytest.raises(UsageError, match=f"--data-dir {tmp_path / 'data.zip'} is a file, not a folder"):
        new_run("--data-dir", str(tmp_path / "data.zip"))
