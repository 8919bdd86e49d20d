"""--compare all: every architecture that takes the encoder, and a note for each one left out."""
import main
from tests.conftest import FAST


def test_compare_all_leaves_out_the_architectures_the_encoder_does_not_fit(tiny_camvid, tmp_path, capsys):
    # At FAST's scale PAN's crops are too small: the comparison stops at its check, before any training.
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--compare", "all", "--output-dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "note: --compare all leaves out dpt: dpt takes a timm ViT encoder, 'tu-<name>'" in out
    assert err.startswith("error: pan:")
