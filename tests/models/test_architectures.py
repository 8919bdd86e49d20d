"""build_model: every architecture x every valid depth, the AFMA-off baseline, and the errors of bad settings."""
import pytest
import segmentation_models_pytorch as smp
import torch
import torchvision

from models import ARCHITECTURES, build_model
from models.reference import literal_afma_forward
from utils.losses import AFMALoss

ARCHS = list(ARCHITECTURES)
SIZE = 128  # PAN's minimum; with patch 2, whole patches even at stride 32
VIT = "tu-vit_tiny_patch16_224"  # the smallest timm ViT DPT takes (5.7 M parameters), random init offline
ENCODER = {"dpt": VIT}  # every other architecture: resnet18


def encoder(arch):
    return ENCODER.get(arch, "resnet18")


def depths(arch):
    """The attention depths of the test encoder: a ViT's four block outputs, a ResNet's five stages."""
    return (1, 2, 3, 4) if arch == "dpt" else (1, 2, 3, 4, 5)


@pytest.mark.e2e
@pytest.mark.parametrize("arch", ARCHS)
def test_every_depth_trains(arch):
    torch.manual_seed(0)
    x, target = torch.randn(2, 3, SIZE, SIZE), torch.randint(0, 4, (2, SIZE, SIZE))
    for depth in depths(arch):
        model = build_model(arch, encoder(arch), None, classes=4, att_depth=depth, patch_size=2)
        logits, attention = model(x)
        assert logits.shape == (2, 4, SIZE, SIZE)
        stride = 16 if arch == "dpt" else min(2**depth, model.net.encoder.output_stride)
        assert attention.stride == stride
        assert attention.shape == (2, 4, (SIZE // 2) ** 2, (SIZE // stride // 2) ** 2)
        AFMALoss()((logits, attention), target).backward()
        for name, part in [("image branch", model.afma.image_branch), ("feature branch", model.afma.feature_branch),
                           ("shared transform", model.afma.transform)]:
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None and g.abs().sum() > 0 for g in grads), f"{arch} depth {depth}: no gradient in {name}"


@pytest.mark.parametrize("arch", ["unet", "deeplabv3"])
def test_model_output_matches_literal_spec(arch):
    """The wrapper's corrected logits equal the literal per-class computation on the same head output."""
    torch.manual_seed(0)
    model = build_model(arch, "resnet18", None, classes=3, att_depth=3, patch_size=4).double().eval()
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    logits, attention = model(x)
    features = model.net.encoder(x)
    z = model.net.segmentation_head(model.net.decoder(features))
    expected, afma, stride = literal_afma_forward(model.afma, x, features[3], z, 4)
    assert stride == 8
    assert (logits - expected).abs().max() < 1e-10
    assert (attention.dense() - afma).abs().max() < 1e-10


@pytest.mark.parametrize("patch_size", [4, 10])  # whole patches; pixels beyond the last whole 10 x 10 patch
def test_forward_without_gradient_equals_the_forward_with_it_bit_for_bit(patch_size):
    """Without gradient the image side's temporaries share memory (§4.9); no number may change."""
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=patch_size).eval()
    x = torch.randn(2, 3, 64, 96)
    with_grad, _ = model(x)
    with torch.no_grad():
        without, _ = model(x)
    assert torch.equal(without, with_grad.detach())
    assert not torch.equal(without, model.net.segmentation_head(model.net.decoder(model.net.encoder(x))).detach())


def test_pspnet_follows_the_reference():
    model = build_model("pspnet", "resnet18", None, classes=3, att_depth=5, patch_size=2)
    assert model.net.encoder._depth == 5 and model.net.encoder.output_stride == 8
    assert model(torch.randn(1, 3, 64, 64))[0].shape == (1, 3, 64, 64)


def test_pspnet_encoder_is_dilated_as_torchvision_dilates_a_resnet():
    """The authors' encoder: torchvision's resnet50 with replace_stride_with_dilation=[False, True, True]."""
    torch.manual_seed(0)
    model = build_model("pspnet", "resnet50", None, classes=3, att_depth=None).double().eval()
    reference = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).double().eval()
    missing, unexpected = reference.load_state_dict(model.net.encoder.state_dict(), strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        features = model.net.encoder(x)
        y = reference.layer2(reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))
        layer3 = reference.layer3(y)
        layer4 = reference.layer4(layer3)
    assert features[4].shape == layer3.shape == (1, 1024, 8, 8)
    assert (features[4] - layer3).abs().max() < 1e-12 and (features[5] - layer4).abs().max() < 1e-12


def test_unetplusplus_head_is_a_1x1_convolution():
    model = build_model("unet++", "resnet18", None, classes=3, att_depth=None)
    conv = model.net.segmentation_head[0]
    assert conv.kernel_size == (1, 1) and conv.padding == (0, 0) and conv.in_channels == 16


# The plain SMP model each architecture must be, written out from SMP's own classes (not from ARCHITECTURES):
# the authors' PSPNet runs five stages at stride 8 and upsamples by 8 (on ResNet-18 SMP's dilation is kept, so
# the plain model is SMP's); their UNet++ head is a 1x1 convolution.
def plain_smp(arch, classes, in_channels=3):
    def unetplusplus(**kwargs):
        net = smp.UnetPlusPlus(**kwargs)
        net.segmentation_head[0] = torch.nn.Conv2d(16, classes, 1)
        return net

    make = {"unet": smp.Unet, "unet++": unetplusplus, "fpn": smp.FPN, "linknet": smp.Linknet, "manet": smp.MAnet,
            "pan": smp.PAN, "deeplabv3": smp.DeepLabV3,
            "pspnet": lambda **kwargs: smp.PSPNet(encoder_depth=5, output_stride=8, upsampling=8, **kwargs),
            "deeplabv3+": smp.DeepLabV3Plus, "upernet": smp.UPerNet, "segformer": smp.Segformer,
            "dpt": lambda **kwargs: smp.DPT(dynamic_img_size=True, **kwargs)}[arch]
    return make(encoder_name=encoder(arch), encoder_weights=None, classes=classes, in_channels=in_channels)


@pytest.mark.parametrize("arch,in_channels", [(arch, 3) for arch in ARCHS] + [("unet", 1), ("dpt", 4)])
def test_baseline_equals_plain_smp(arch, in_channels):
    torch.manual_seed(0)
    model = build_model(arch, encoder(arch), None, classes=5, att_depth=None, in_channels=in_channels).eval()
    plain = plain_smp(arch, 5, in_channels).eval()
    plain.load_state_dict(model.net.state_dict())
    x = torch.randn(2, in_channels, SIZE, SIZE)
    logits, attention = model(x)
    assert attention is None and model.afma is None
    assert torch.equal(logits, plain(x))
    assert AFMALoss()((logits, None), torch.zeros(2, SIZE, SIZE, dtype=torch.long)).item() > 0


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(arch="segformer2"), ["arch='segformer2'", "unet++", "deeplabv3"]),
        (dict(arch="Unet"), ["arch='Unet'", "did you mean 'unet'"]),
        (dict(encoder_name="resnet19"), ["encoder_name='resnet19'", "resnet18"]),
        (dict(att_depth=6), ["att_depth=6", "(1, 2, 3, 4, 5)"]),
        (dict(att_depth=0), ["att_depth=0"]),
        (dict(encoder_name="mit_b0", att_depth=1), ["att_depth=1", "mit_b0", "empty", "(2, 3, 4, 5)"]),
        (dict(patch_size=0), ["patch_size=0"]),
        (dict(classes=1), ["classes=1"]),
        (dict(encoder_weights="instagram"), ["instagram", "imagenet"]),
        (dict(arch="dpt"), ["encoder_name='resnet18'", "dpt takes a timm ViT", "tu-vit_tiny_patch16_224"]),
        (dict(arch="dpt", encoder_name="tu-resnet18"), ["encoder_name='tu-resnet18'", "is not one"]),
        (dict(arch="segformer", encoder_name="mit_b0", att_depth=1), ["att_depth=1", "empty", "(2, 3, 4, 5)"]),
        (dict(arch="dpt", encoder_name=VIT, att_depth=5), ["att_depth=5", "no features", "(1, 2, 3, 4)"]),
        (dict(in_channels=0), ["in_channels=0", "1 or more"]),
        (dict(in_channels=4, mean=(0.5, 0.5, 0.5)), ["mean=(0.5, 0.5, 0.5)", "one value per input channel (4)"]),
        (dict(in_channels=1, std=(0.0,)), ["std=(0.0,)", "positive"]),
    ],
)
def test_impossible_settings_fail_at_construction(kwargs, words):
    settings = dict(arch="unet", encoder_name="resnet18", encoder_weights=None, classes=3, att_depth=2) | kwargs
    with pytest.raises(ValueError) as error:
        build_model(**settings)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    "arch,depth,size,nearest",
    [("unet", 2, (100, 128), "128x128"), ("fpn", 3, (64, 70), "96x96"), ("fpn", 2, (64, 70), "64x96"), ("unet", 5, (64, 64), "320x320"),
     ("deeplabv3", 4, (40, 80), "80x80"), ("pan", None, (64, 96), "128x128")],
)
def test_invalid_input_size_fails_in_forward(arch, depth, size, nearest):
    model = build_model(arch, "resnet18", None, classes=3, att_depth=depth)
    with pytest.raises(ValueError) as error:
        model(torch.randn(1, 3, *size))
    assert f"{size[0]}x{size[1]}" in str(error.value) and f"nearest valid size is {nearest}" in str(error.value)


def test_size_not_multiple_of_patch_is_valid():
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=10)
    logits, attention = model(torch.randn(1, 3, 96, 128))
    assert logits.shape == (1, 3, 96, 128) and attention.grid == (9, 12)


@pytest.mark.parametrize("arch", ["deeplabv3+", "upernet", "segformer", "dpt"])
def test_spec_rebuilds_the_new_architectures(arch):
    """What a checkpoint holds (the spec and the state dict) gives the same model back, output for output."""
    torch.manual_seed(0)
    model = build_model(arch, encoder(arch), None, classes=3, att_depth=2, patch_size=2, in_channels=4).eval()
    again = build_model(**model.spec.to_dict()).eval()
    again.load_state_dict(model.state_dict())
    x = torch.randn(1, 4, 64, 96)
    assert torch.equal(again(x)[0], model(x)[0])


@pytest.mark.parametrize("in_channels", [1, 4])
def test_afma_image_branch_takes_the_input_channels(in_channels):
    """The encoder and the AFMA image branch both read N channels; every channel reaches the attention."""
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=2, in_channels=in_channels)
    assert model.afma.image_branch[0].in_channels == in_channels == model.spec.in_channels
    x = torch.randn(2, in_channels, 64, 64, requires_grad=True)
    _, attention = model(x)
    attention.dense().sum().backward()
    assert (x.grad.abs().sum(dim=(0, 2, 3)) > 0).all()


def test_a_spec_without_in_channels_is_a_three_channel_model():
    """Checkpoints written before in_channels was recorded rebuild as the RGB models they were."""
    spec = build_model("unet", "resnet18", None, classes=3, att_depth=2).spec.to_dict()
    del spec["in_channels"]
    model = build_model(**spec)
    assert model.spec.in_channels == 3 and model.afma.image_branch[0].in_channels == 3
    assert model.spec.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("channels,mean", [(1, ((0.485 + 0.456 + 0.406) / 3,)), (3, (0.485, 0.456, 0.406)),
                                           (4, (0.485, 0.456, 0.406, 0.485)), (5, (0.485, 0.456, 0.406, 0.485, 0.456))])
def test_default_normalisation_follows_smps_first_convolution(channels, mean):
    """SMP adapts pretrained RGB filters to N channels by summing them (1) or reusing them in turn (N): the
    default mean of channel i is that of the RGB channel whose filter it gets."""
    spec = build_model("unet", "resnet18", None, classes=3, att_depth=None, in_channels=channels).spec
    assert spec.mean == pytest.approx(mean) and len(spec.std) == channels


@pytest.mark.parametrize("arch", ARCHS)
def test_the_table_knows_which_architectures_cannot_train_on_one_image(arch):
    """batch_norm_pooling (main.py refuses --batch-size 1 for it) is exactly where SMP's training step fails."""
    model = build_model(arch, encoder(arch), None, classes=3, att_depth=None).train()
    x = torch.randn(1, 3, SIZE, SIZE)
    if ARCHITECTURES[arch].batch_norm_pooling:
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            model(x)
    else:
        model(x)
