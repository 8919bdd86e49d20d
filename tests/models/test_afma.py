"""models/afma.py (the plain path) and models/afma_kernels.py (the §4 speed-ups) against the literal per-class
transcription of the spec, in float64 and float32."""
import pytest
import torch
from torch import nn

import models.afma_kernels as kernels
from models.afma import (
    AFMA,
    FactoredAttention,
    attention_mse,
    factored_attention,
    factored_gold,
    fold_patches,
    gold_afma,
    modify_output,
    one_hot,
    patch_attention,
    patches,
)
from models.afma_kernels import (
    KernelAttention,
    add_folded_product,
    class_argmax,
    count_row_nonzeros,
    merged_conv_pair,
    merged_transform_weight,
    pointwise_conv,
    pooled_one_hot,
)
from models.reference import (literal_afma_forward, literal_gold_afma, literal_modify_output, literal_patch_attention,
                              literal_patches)

# (batch, classes, H, W, stride, patch): whole patches, remainders on both axes, one patch, stride 1.
SHAPES = [(2, 3, 40, 60, 2, 10), (1, 4, 47, 73, 4, 5), (2, 2, 80, 80, 8, 10), (1, 3, 16, 24, 1, 4), (2, 5, 64, 96, 4, 7)]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def make_transform(p, dtype):
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(p * p, 2 * p * p, bias=False), nn.Linear(2 * p * p, p * p, bias=False), nn.ReLU()).to(dtype)


def random_branches(b, c, h, w, s, dtype):
    torch.manual_seed(0)
    return torch.randn(b, c, h, w, dtype=dtype), torch.randn(b, c, h // s, w // s, dtype=dtype)


def max_error(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("b,c,h,w,s,p", SHAPES)
def test_patches_and_fold_match_unfold(b, c, h, w, s, p):
    x = torch.randn(b, c, h, w, dtype=torch.float64)
    rows = patches(x, p)
    assert rows.shape == (b, c, (h // p) * (w // p), p * p)
    for ch in range(c):
        assert torch.equal(rows[:, ch], literal_patches(x[:, ch], p))
    folded = fold_patches(rows, (h, w), p)
    gh, gw = (h // p) * p, (w // p) * p
    assert torch.equal(folded[..., :gh, :gw], x[..., :gh, :gw])
    assert folded[..., gh:, :].abs().sum() == 0 and folded[..., :, gw:].abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("b,c,h,w,s,p", SHAPES)
def test_patch_attention_matches_literal(b, c, h, w, s, p, dtype):
    img, fea = random_branches(b, c, h, w, s, dtype)
    transform = make_transform(p, dtype)
    reference = literal_patch_attention(img, fea, transform, p)
    for ours in (patch_attention(img, fea, transform, p), kernels.factored_attention(img, fea, transform, p).dense()):
        assert ours.shape == reference.shape == (b, c, (h // p) * (w // p), (h // s // p) * (w // s // p))
        assert max_error(ours, reference) < TOLERANCE[dtype] * max(1.0, reference.abs().max().item())
        assert (ours >= 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("b,c,h,w,s,p", SHAPES)
def test_modify_output_matches_literal_dense_and_factored(b, c, h, w, s, p, dtype):
    img, fea = random_branches(b, c, h, w, s, dtype)
    transform = make_transform(p, dtype)
    logits = torch.randn(b, c, h, w, dtype=dtype)
    factored = factored_attention(img, fea, transform, p)
    assert factored.stride == s
    dense = factored.dense()
    reference = literal_modify_output(logits, literal_patch_attention(img, fea, transform, p), s, p)
    scale = max(1.0, reference.abs().max().item())
    fast = kernels.factored_attention(img, fea, transform, p)
    for ours in (modify_output(logits, dense, s, p), modify_output(logits, factored, s, p),
                 kernels.modify_output(logits, dense, s, p), kernels.modify_output(logits, fast, s, p)):
        assert max_error(ours, reference) < TOLERANCE[dtype] * scale
    # The correction did something, and left the pixels outside whole patches alone.
    changed = modify_output(logits, factored, s, p) != logits
    assert changed[..., : (h // p) * p, : (w // p) * p].any()
    assert not changed[..., (h // p) * p :, :].any() and not changed[..., :, (w // p) * p :].any()


def test_row_nonzeros_counts_sparse_rows_exactly():
    """Hand-made factors whose supports meet in known places, including an all-zero row."""
    image = torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, 0], [1, 1, 1]]).view(1, 1, 4, 3)
    feature = torch.tensor([[3.0, 0, 0], [0, 0, 5], [1, 1, 0]]).view(1, 1, 3, 3)
    for attention in (FactoredAttention(image, feature, grid=(2, 2), stride=1),
                      KernelAttention(image, feature, grid=(2, 2), stride=1)):
        assert attention.row_nonzeros().flatten().tolist() == [2, 1, 0, 3]
        assert torch.equal(attention.row_nonzeros().flatten(), (attention.dense() != 0).sum(-1).flatten().float())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("b,c,h,w,s,p", SHAPES)
def test_gold_afma_matches_literal(b, c, h, w, s, p, dtype):
    torch.manual_seed(2)
    target = torch.randint(0, c, (b, h, w))
    onehot = nn.functional.one_hot(target, c).permute(0, 3, 1, 2).to(dtype)
    ours, reference = gold_afma(onehot, s, p), literal_gold_afma(onehot, s, p)
    assert ours.shape == reference.shape
    assert max_error(ours, reference) < TOLERANCE[dtype]
    assert reference.sum() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("b,c,h,w,s,p", SHAPES)
def test_factored_mse_equals_dense_mse(b, c, h, w, s, p, dtype):
    img, fea = random_branches(b, c, h, w, s, dtype)
    attention = factored_attention(img, fea, make_transform(p, dtype), p)
    target = torch.randint(0, c, (b, h, w))
    onehot = nn.functional.one_hot(target, c).permute(0, 3, 1, 2).to(dtype)
    gold = factored_gold(onehot, s, p)
    reference = ((attention.dense() - literal_gold_afma(onehot, s, p)) ** 2).mean()
    assert abs(attention_mse(attention, gold).item() - reference.item()) < TOLERANCE[dtype] * max(1.0, reference.item())
    assert abs(attention_mse(attention.dense(), gold).item() - reference.item()) < TOLERANCE[dtype]


def test_factored_mse_gradient_equals_dense_gradient():
    img, fea = random_branches(1, 2, 40, 40, 2, torch.float64)
    transform = make_transform(10, torch.float64)
    onehot = nn.functional.one_hot(torch.randint(0, 2, (1, 40, 40)), 2).permute(0, 3, 1, 2).double()
    gold = factored_gold(onehot, 2, 10)
    grads = []
    for use_dense in (False, True):
        transform.zero_grad()
        attention = factored_attention(img, fea, transform, 10)
        attention_mse(attention.dense() if use_dense else attention, gold).backward()
        grads.append(transform[0].weight.grad.clone())
    assert grads[0].abs().sum() > 0
    assert max_error(*grads) < 1e-12


def test_module_branches_and_shared_transform():
    module = AFMA(feature_channels=16, classes=3, depth=2, patch_size=5).double()
    x, feature = torch.randn(2, 3, 40, 40, dtype=torch.float64), torch.randn(2, 16, 10, 10, dtype=torch.float64)
    attention = module(x, feature)
    img = module.image_branch(x)
    fea = module.feature_branch(feature) / 16
    assert attention.stride == 4 and attention.grid == (8, 8)
    assert max_error(attention.dense(), literal_patch_attention(img, fea, module.transform, 5)) < 1e-10
    # The one transform holds the only Linear weights: both branches go through the same parameters.
    assert [type(m) for m in module.transform] == [nn.Linear, nn.Linear, nn.ReLU]
    assert all(m.bias is None for m in module.transform[:2])


@pytest.mark.parametrize("size", [(32, 48), (41, 33), (7, 9)])
def test_merged_image_branch_equals_the_two_convolutions(size):
    """Values and gradients of the merged 9x9 convolution equal Conv7x7 -> Conv3x3, borders included."""
    torch.manual_seed(3)
    pair = nn.Sequential(nn.Conv2d(3, 8, 7, padding=3), nn.Conv2d(8, 4, 3, padding=1)).double()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    weights = torch.randn(2, 4, *size, dtype=torch.float64)
    grads = []
    for merged in (False, True):
        pair.zero_grad()
        out = merged_conv_pair(x, *pair) if merged else pair(x)
        (out * weights).sum().backward()
        grads.append([p.grad.clone() for p in pair.parameters()] + [out.detach()])
    for ours, reference in zip(grads[1], grads[0]):
        assert max_error(ours, reference) < 1e-10


def test_row_nonzeros_in_small_blocks_equals_one_block(monkeypatch):
    img, fea = random_branches(2, 3, 40, 60, 2, torch.float64)
    attention = kernels.factored_attention(img, fea, make_transform(10, torch.float64), 10)
    whole = attention.row_nonzeros()
    monkeypatch.setattr(kernels, "COUNT_BLOCK_ELEMENTS", 50)  # one row per block, whichever the support type
    monkeypatch.setattr(kernels, "COUNT_BLOCK_ELEMENTS_INT8", 50)
    assert torch.equal(attention.row_nonzeros(), whole)
    assert torch.equal(whole, (attention.dense() != 0).sum(-1, keepdim=True).double())


def literal_row_nonzeros(image, feature):
    """Per pair of rows: do the supports meet? Counted row by row, no matrix product."""
    meet = (image.double()[..., :, None, :] > 0) & (feature.double()[..., None, :, :] > 0)
    return meet.any(-1).sum(-1, keepdim=True).float()


@pytest.mark.parametrize("support", [torch.int8, torch.bfloat16, torch.float32, torch.float16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("p", [3, 8, 10, 13, 17])  # P = 9, 64, 100, 169, 289: around 64-bit words and bf16's 256
def test_row_nonzeros_equal_the_literal_count_on_adversarial_rows(p, dtype, support):
    """Whatever type the supports are multiplied in: the count only asks whether a sum is 0."""
    torch.manual_seed(0)
    image = torch.relu(torch.randn(2, 3, 40, p * p)).to(dtype)
    feature = torch.relu(torch.randn(2, 3, 30, p * p) - 1.5).to(dtype)  # sparse: many pairs do not meet
    image[:, :, :5] = 0  # all-zero rows: count 0
    image[:, :, 5:10] = torch.rand(2, 3, 5, p * p).to(dtype) + 0.5  # all-positive rows: count = non-zero features
    feature[:, :, :4] = 0
    feature[:, 0, 4:8] = 1  # all-positive features: every non-zero image row meets them
    feature[:, :, 8, -1] = 2 ** -14  # one tiny value in the last position, past the last whole 64 bits
    counts = count_row_nonzeros(image, feature, dtype=support)
    assert counts.dtype == torch.float32
    assert torch.equal(counts, literal_row_nonzeros(image, feature))
    assert counts[:, :, :5].eq(0).all() and counts.max() > 0


@pytest.mark.parametrize("support", [torch.int8, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("li, lf, area", [(3, 4, 1), (5, 1, 9), (1, 6, 4), (1, 1, 1)])
def test_row_nonzeros_of_one_value_patches_or_single_rows(li, lf, area, support):
    """Size-1 dimensions: tensors whose strides are no longer the usual ones once transposed."""
    torch.manual_seed(0)
    image = torch.relu(torch.randn(2, 3, li, area))
    feature = torch.relu(torch.randn(2, 3, lf, area))
    image[0, 0], feature[1, 2] = 1, 0
    counts = count_row_nonzeros(image, feature, dtype=support)
    assert torch.equal(counts, literal_row_nonzeros(image, feature)) and counts.max() > 0


def test_row_nonzeros_refuse_negative_factors():
    image, feature = torch.rand(1, 1, 4, 9), torch.rand(1, 1, 3, 9)
    feature[0, 0, 1, 2] = -1
    with pytest.raises(AssertionError, match="non-negative"):
        count_row_nonzeros(image, feature)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_class_argmax_equals_argmax_with_ties(dtype, channels_last, device):
    torch.manual_seed(0)
    logits = torch.randint(-2, 3, (2, 12, 17, 23)).to(dtype)  # five values over 12 classes: ties everywhere
    logits[0, :, 0, 0] = 1  # all classes tied: class 0 wins
    logits[1, :, 0, 0] = torch.tensor([0.0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 4, 0])
    logits[1, 11, 0, 1] = 9  # the last class alone at the top
    logits = logits.to(device)
    if channels_last:
        logits = logits.contiguous(memory_format=torch.channels_last)
    labels = class_argmax(logits)
    assert labels.dtype == torch.int64 and torch.equal(labels, logits.argmax(1))
    assert labels[0, 0, 0] == 0 and labels[1, 0, 0] == 3 and labels[1, 0, 1] == 11  # ties: the lowest index


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("classes", [2, 12, 256, 300])
def test_class_argmax_equals_argmax_with_nan_and_infinities(classes, device):
    """NaN is argmax's maximum (the first NaN wins), also over +inf; -inf everywhere gives class 0."""
    torch.manual_seed(1)
    logits = torch.randn(2, classes, 9, 11)
    logits[0, -1, 1, 1] = float("nan")
    logits[0, 0, 2, 2] = logits[0, 1, 2, 2] = float("nan")
    logits[0, 1, 3, 3], logits[0, 0, 3, 3] = float("nan"), float("inf")
    logits[1, :, 4, 4] = float("-inf")
    logits[1, 1, 5, 5] = logits[1, -1, 5, 5] = float("inf")
    logits = logits.to(device)
    labels = class_argmax(logits)
    assert torch.equal(labels, logits.argmax(1))
    assert labels[0, 1, 1] == classes - 1 and labels[0, 2, 2] == 0 and labels[0, 3, 3] == 1
    assert labels[1, 4, 4] == 0 and labels[1, 5, 5] == 1
    clean = logits[1:]  # no NaN: the vectorised path, with the infinities
    assert torch.equal(class_argmax(clean), clean.argmax(1)) and class_argmax(clean)[0, 4, 4] == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_equals_the_scaled_convolution_values_and_gradients(channels_last, device):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, kernel_size=1).double().to(device)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weights = torch.randn(2, 4, 5, 7, dtype=torch.float64, device=device)
    results = []
    for ours in (False, True):
        conv.zero_grad()
        leaf = x.clone().requires_grad_()
        out = pointwise_conv(leaf, conv, 1 / 16) if ours else conv(leaf) / 16
        (out * weights).sum().backward()
        results.append([out.detach(), leaf.grad, conv.weight.grad.clone(), conv.bias.grad.clone()])
    for ours, reference in zip(*reversed(results)):
        assert ours.shape == reference.shape and max_error(ours, reference) < 1e-12
    with pytest.raises(AssertionError, match="power of two"):
        pointwise_conv(x, conv, 0.3)
    with pytest.raises(AssertionError, match="1x1"):
        pointwise_conv(x, nn.Conv2d(6, 4, kernel_size=3).double().to(device), 1.0)


@pytest.mark.parametrize("size, stride", [((40, 60), 4), ((47, 73), 4)])  # whole patches; remainders
def test_recycled_temporaries_give_the_same_attention_and_correction_bit_for_bit(size, stride):
    """Without gradient the image factor is written over the image maps, the supports and the correction's
    product over the patch copy (§4.9): the same numbers, in memory that was already there."""
    torch.manual_seed(0)
    transform = make_transform(5, torch.float32)
    image_maps = torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)
    feature_maps, logits = torch.randn(2, 3, size[0] // stride, size[1] // stride), torch.randn(2, 3, *size)
    with torch.no_grad():
        plain = kernels.factored_attention(image_maps, feature_maps, transform, 5)
        expected = kernels.modify_output(logits, plain, stride, 5)
        maps = image_maps.clone(memory_format=torch.channels_last)
        recycled = kernels.factored_attention(maps, feature_maps, transform, 5, recycle=True)
        assert recycled.image.data_ptr() == maps.data_ptr() and recycled.spare is not None
        assert torch.equal(recycled.image, plain.image) and torch.equal(recycled.feature, plain.feature)
        assert torch.equal(recycled.row_nonzeros(), plain.row_nonzeros())
        assert torch.equal(kernels.modify_output(logits, recycled, stride, 5), expected)


def test_recycling_one_patch_maps_copies_their_patches_before_overwriting_them():
    """With one patch per map the patches are a view of the image maps: the spare must be a copy, or T's
    product would overwrite its own input (the product then runs on another kernel: equal to rounding)."""
    torch.manual_seed(0)
    transform = make_transform(5, torch.float32)
    image_maps = torch.randn(2, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = kernels.factored_attention(image_maps, image_maps, transform, 5)
        maps = image_maps.clone(memory_format=torch.channels_last)
        recycled = kernels.factored_attention(maps, image_maps, transform, 5, recycle=True)
    assert recycled.image.data_ptr() == maps.data_ptr()
    assert recycled.spare.untyped_storage().data_ptr() != maps.untyped_storage().data_ptr()
    assert max_error(recycled.image, plain.image) < 1e-5 and plain.image.abs().max() > 0.1


def test_row_nonzeros_of_rows_longer_than_int16():
    """A row meeting 2**15 + 3 feature patches: its count is summed past int16."""
    image, feature = torch.ones(1, 1, 2, 4), torch.zeros(1, 1, 2**15 + 5, 4)
    feature[..., 2:, 1] = 1
    assert count_row_nonzeros(image, feature).flatten().tolist() == [2**15 + 3] * 2


def test_support_dtype_is_int8_or_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    for vnni, bf16, expected in [(False, False, torch.float32), (False, True, torch.bfloat16),
                                 (True, False, torch.int8), (True, True, torch.int8)]:
        monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: vnni)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
        assert kernels.support_dtype(cpu) == expected
    assert kernels.support_dtype(torch.device("cuda")) == torch.float16


def test_kernels_fall_back_to_public_apis_where_a_release_lacks_the_private_ones(monkeypatch):
    """A PyTorch without torch._int_mm or torch.cpu's instruction-set tests: float32 supports, the same count."""
    image, feature = torch.relu(torch.randn(2, 3, 40, 25)), torch.relu(torch.randn(2, 3, 30, 25) - 1)
    expected = literal_row_nonzeros(image, feature)
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: True)
    monkeypatch.delattr(torch, "_int_mm")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert kernels.support_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.delattr(torch.cpu, "_is_vnni_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert kernels.support_dtype(torch.device("cpu")) == torch.float32
    assert torch.equal(count_row_nonzeros(image, feature), expected)
    with pytest.raises(AssertionError, match="_int_mm"):
        count_row_nonzeros(image, feature, dtype=torch.int8)


def test_merged_transform_equals_the_two_linear_maps_values_and_gradients():
    transform = make_transform(5, torch.float64)
    rows = torch.randn(2, 3, 7, 25, dtype=torch.float64)
    grads = []
    for merged in (False, True):
        transform.zero_grad()
        out = torch.relu(rows @ merged_transform_weight(transform)) if merged else transform(rows)
        (out * torch.linspace(-1, 1, 25, dtype=torch.float64)).sum().backward()
        grads.append([out.detach()] + [m.weight.grad.clone() for m in transform[:2]])
    for ours, reference in zip(grads[1], grads[0]):
        assert max_error(ours, reference) < 1e-12
    assert grads[1][1].abs().sum() > 0 and grads[1][2].abs().sum() > 0


def test_merged_transform_refuses_another_transform():
    with_bias = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 4, bias=False), nn.ReLU())
    with pytest.raises(AssertionError, match="bias"):
        merged_transform_weight(with_bias)
    with pytest.raises(AssertionError, match="Linear, Linear, ReLU"):
        merged_transform_weight(nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("stride", [1, 2, 3, 8])
def test_pooled_one_hot_equals_the_pool_of_the_one_hot(stride, dtype):
    """Bit for bit, cells cut off by a remainder included; the labels of an argmax with ties."""
    torch.manual_seed(0)
    labels = class_argmax(torch.randint(-2, 3, (2, 5, 37, 41)).to(dtype))
    reference = nn.functional.avg_pool2d(one_hot(labels, 5, dtype), stride, stride)
    ours = pooled_one_hot(labels, 5, stride, dtype)
    assert ours.dtype == dtype and torch.equal(ours, reference)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(40, 60), (47, 73), (3, 7)])  # whole patches, remainders, no whole patch
def test_add_folded_product_equals_the_folded_correction(size, channels_last):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, *size)
    if channels_last:
        logits = logits.contiguous(memory_format=torch.channels_last)
    rows = torch.randn(2, 3, (size[0] // 5) * (size[1] // 5), 25)
    reference = logits * fold_patches(rows, size, 5) + logits
    assert torch.equal(add_folded_product(logits, rows, 5), reference)


def graph_nodes(tensor):
    """Names of every autograd node behind `tensor`."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


def test_training_graph_copies_no_whole_map():
    """The merged convolution's border is subtracted by index, not through views of the map: each write to a
    view (CopySlices) would cost the backward a copy of the whole gradient."""
    module = AFMA(feature_channels=8, classes=3, depth=1, patch_size=5)
    x, feature = torch.randn(1, 3, 40, 60), torch.randn(1, 8, 20, 30, requires_grad=True)
    logits = torch.randn(1, 3, 40, 60, requires_grad=True)
    attention = module(x, feature)
    nodes = graph_nodes(module.correct(logits, attention).sum() + attention.image.sum())
    assert "ConvolutionBackward0" in nodes and "IndexPutBackward0" in nodes
    assert "CopySlices" not in nodes


def module_outputs_and_gradients(module, x, feature, logits, target, literal):
    """z', the dense AFMA, and the gradients of sum(z' * weights) + MSE(AFMA, gold) with respect to every parameter
    and every input: through the module's forward and correction, or through models/reference.py (`literal`)."""
    module.zero_grad()
    leaves = [t.detach().clone().requires_grad_() for t in (x, feature, logits)]
    classes, p = logits.shape[1], module.patch_size
    onehot = nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).double()
    weights = torch.linspace(-1, 1, logits.numel(), dtype=torch.float64).view(logits.shape)
    if literal:
        corrected, dense, stride = literal_afma_forward(module, *leaves, p)
        mse = nn.functional.mse_loss(dense, literal_gold_afma(onehot, stride, p))
    else:
        attention = module(*leaves[:2])
        corrected, dense = module.correct(leaves[2], attention), attention.dense()
        mse = attention_mse(attention, factored_gold(onehot, attention.stride, p))
    ((corrected * weights).sum() + 1e3 * mse).backward()
    return [corrected.detach(), dense.detach()] + [t.grad for t in leaves] + [q.grad.clone() for q in module.parameters()]


@pytest.mark.parametrize("kernels_on", [True, False], ids=["kernels", "plain"])
@pytest.mark.parametrize("size, feature_size, in_channels", [((40, 60), (10, 15), 3), ((47, 73), (11, 18), 1)])
def test_both_paths_equal_the_reference_in_values_and_gradients(kernels_on, size, feature_size, in_channels):
    """The whole AFMA of a model (branches, attention, correction, MSE) through each path, against the literal
    transcription in float64: every output and every gradient within 1e-10, remainders and one input channel too."""
    torch.manual_seed(0)
    module = AFMA(feature_channels=6, classes=3, depth=2, patch_size=5, in_channels=in_channels).double()
    module.use_kernels = kernels_on
    x = torch.randn(2, in_channels, *size, dtype=torch.float64)
    feature = torch.randn(2, 6, *feature_size, dtype=torch.float64)
    logits, target = torch.randn(2, 3, *size, dtype=torch.float64), torch.randint(0, 3, (2, *size))
    ours = module_outputs_and_gradients(module, x, feature, logits, target, literal=False)
    reference = module_outputs_and_gradients(module, x, feature, logits, target, literal=True)
    assert len(ours) == len(reference) == 5 + len(list(module.parameters()))
    for mine, theirs in zip(ours, reference):
        assert mine.shape == theirs.shape and theirs.abs().max() > 0
        assert max_error(mine, theirs) < 1e-10 * max(1.0, theirs.abs().max().item())


def test_the_kernels_run_in_eager_mode_and_the_plain_path_when_compiling_or_switched_off(monkeypatch):
    module = AFMA(feature_channels=6, classes=3, depth=1, patch_size=5)
    x, feature = torch.randn(1, 3, 20, 20), torch.randn(1, 6, 10, 10)
    assert type(module(x, feature)) is KernelAttention
    module.use_kernels = False
    assert type(module(x, feature)) is FactoredAttention
    module.use_kernels = True
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert type(module(x, feature)) is FactoredAttention
