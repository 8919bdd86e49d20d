"""Across Feature Map Attention (Sang et al., TPAMI 2023): the method, in the order of the paper.

docs/METHOD.md describes it with its equations; the section numbers below (§) refer to that file.
Shapes: B batch, C classes, p the patch size, P = p * p, Li / Lf the number of whole p x p patches of the
image-resolution / feature-resolution maps, s the feature map's stride.

    §1  patches, the two branches and the shared patch transform T  ->  AFMA = T(img) T(fea)^T / P
    §2  the output correction  z' = z * (1 + R)
    §3  the gold AFMA and the MSE that trains the attention
    §4  exact speed-ups: 4.1 the merged image-branch convolution, 4.2 the blocked non-zero count from the
        supports (int8 or bf16 where the CPU multiplies it natively), 4.3 the factored product and the Gram identity,
        4.4 T's two linear maps as one matrix, 4.5 the pooled one-hot from counts, 4.6 the fold read as a view,
        4.7 the one-hot's argmax from two vectorised maxima, 4.8 the feature branch's 1x1 convolution as a product,
        4.9 without gradient on the CPU, temporaries written into each other's memory

The AFMA of one (image, class) is a product of two thin matrices, so `FactoredAttention` keeps the two
factors: the correction and the MSE then cost O((Li + Lf) P^2) instead of O(Li Lf P), and the Li x Lf matrix
is only formed when someone asks (`.dense()`), or without gradient, as 0/1 supports in the type the
device multiplies fastest (int8 or 16 bits) and in row blocks, to count each row's non-zeros (the one step that still
costs O(Li Lf P), §4.2).
The public functions `patch_attention`, `modify_output` and `gold_afma` take and return dense tensors too;
`models/reference.py` is the slow literal transcription every one of them is tested against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The additive constant that keeps the row normalisation finite for all-zero rows (§2).
COUNT_EPS = 1e-5


# ----------------------------------------------------------------------------------------- §1 patches
def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Number of whole patches along each axis (remainder rows and columns are dropped)."""
    return height // patch_size, width // patch_size


def patches(maps: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, C, L, P): non-overlapping p x p patches, row-major, each flattened row-major.

    Equal to F.unfold(kernel=p, stride=p) per channel, as a view-and-permute (no im2col copy of overlap).
    """
    b, c, h, w = maps.shape
    gh, gw = patch_grid(h, w, patch_size)
    p = patch_size
    cropped = maps[:, :, : gh * p, : gw * p]
    return cropped.reshape(b, c, gh, p, gw, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, gh * gw, p * p)


def fold_patches(rows: Tensor, size: tuple[int, int], patch_size: int) -> Tensor:
    """Inverse of `patches`: (B, C, L, P) -> (B, C, H, W); pixels outside whole patches are 0."""
    b, c, _, _ = rows.shape
    h, w = size
    gh, gw = patch_grid(h, w, patch_size)
    p = patch_size
    image = rows.reshape(b, c, gh, gw, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, gh * p, gw * p)
    if (gh * p, gw * p) == (h, w):  # whole patches only: no padded copy of the whole map
        return image
    return F.pad(image, (0, w - gw * p, 0, h - gh * p))


# --------------------------------------------------------------------------------------- §1 attention
@dataclass
class FactoredAttention:
    """AFMA = image @ feature^T / P, kept as its two factors.

    image: (B, C, Li, P) = T(patches(image branch)); feature: (B, C, Lf, P) = T(patches(feature branch));
    grid: the (rows, cols) of the image-patch grid, Li = rows * cols; stride: the feature map's stride s.
    """

    image: Tensor
    feature: Tensor
    grid: tuple[int, int]
    stride: int
    # Memory of the image factor's size that no one reads again, for the count's supports and the correction's
    # product to be written into: set without gradient on the CPU, where a fresh map costs page faults (§4.9).
    spare: Tensor | None = field(default=None, repr=False)

    @property
    def patch_area(self) -> int:
        return self.image.shape[-1]

    @property
    def patch_size(self) -> int:
        p = math.isqrt(self.patch_area)
        assert p * p == self.patch_area, f"patch rows of {self.patch_area} values are not square patches"
        return p

    @property
    def shape(self) -> torch.Size:
        b, c, li, _ = self.image.shape
        return torch.Size((b, c, li, self.feature.shape[2]))

    def dense(self) -> Tensor:
        """The full (B, C, Li, Lf) AFMA. Memory grows as Li x Lf: meant for figures and checks."""
        return self.image @ self.feature.transpose(-1, -2) / self.patch_area

    def row_sum(self) -> Tensor:
        """(B, C, Li): the AFMA summed over feature patches, without forming it (for heat maps)."""
        return self.image @ self.feature.sum(2).unsqueeze(-1) / self.patch_area

    def row_nonzeros(self) -> Tensor:
        """(B, C, Li, 1): the number of non-zero entries in each AFMA row (§4.2)."""
        return count_row_nonzeros(self.image, self.feature, self.spare)


def factored_attention(image_maps: Tensor, feature_maps: Tensor, transform: nn.Module, patch_size: int,
                       recycle: bool = False) -> FactoredAttention:
    """Apply the one shared patch transform T to the patches of both branches (§1.3-1.4).

    T's two linear maps run as one P x P matrix (§4.4). The stride is measured, not assumed: dilated
    encoders keep stride 8 past depth 3. `recycle` (no gradient): `image_maps` is the caller's temporary,
    overwritten by the image factor, and the copy of its patches becomes the attention's `spare` (§4.9).
    """
    weight = merged_transform_weight(transform)
    rows, spare = patches(image_maps, patch_size), None
    if recycle:
        # The copy the product needs anyway; cutting maps into patches is one already, unless they are a
        # single patch each (then `rows` is a view of `image_maps`, about to be overwritten).
        owned = rows.untyped_storage().data_ptr() != image_maps.untyped_storage().data_ptr()
        spare = rows if owned and rows.is_contiguous() else rows.clone(memory_format=torch.contiguous_format)
        image = torch.matmul(spare, weight, out=recycled(image_maps, spare.shape, spare.dtype))
    else:
        image = rows @ weight
    return FactoredAttention(
        image=image.relu_(),  # in place: the product keeps its inputs
        feature=(patches(feature_maps, patch_size) @ weight).relu_(),
        grid=patch_grid(*image_maps.shape[-2:], patch_size),
        stride=image_maps.shape[-2] // feature_maps.shape[-2],
        spare=spare,
    )


def patch_attention(img_maps: Tensor, fea_maps: Tensor, transform: nn.Module, patch_size: int) -> Tensor:
    """AFMA = T(patches(img)) @ T(patches(fea))^T / P: (B, C, Li, Lf), every entry >= 0, no softmax."""
    return factored_attention(img_maps, fea_maps, transform, patch_size).dense()


class AFMA(nn.Module):
    """The learnable part: image branch, feature branch and the one shared patch transform T (§1).

    forward(x, feature) -> FactoredAttention; `correct(logits, attention)` applies §2.
    """

    def __init__(self, feature_channels: int, classes: int, depth: int, patch_size: int = 10, in_channels: int = 3):
        super().__init__()
        area = patch_size * patch_size
        self.depth = depth
        self.patch_size = patch_size
        # Two linear convolutions with nothing between them (§1.1); they run merged (§4.1).
        self.image_branch = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, padding=3),
            nn.Conv2d(64, classes, kernel_size=3, padding=1),
        )
        self.feature_branch = nn.Conv2d(feature_channels, classes, kernel_size=1)
        # The reference scales the feature branch by 4**d with the nominal depth d, dilated or not (§1.2).
        self.feature_scale = 1.0 / 4**depth
        self.transform = nn.Sequential(
            nn.Linear(area, 2 * area, bias=False),
            nn.Linear(2 * area, area, bias=False),
            nn.ReLU(),  # §4.2 counts non-zeros from the factors' supports: they must be non-negative
        )

    def forward(self, x: Tensor, feature: Tensor) -> FactoredAttention:
        # The 9x9 convolution from 3 channels in the layout its library runs fastest, whatever the model's:
        # oneDNN's NHWC kernel takes about half the time of its NCHW one (more than cutting the NHWC maps into
        # patches costs), cuDNN's NHWC kernels are several times slower than its NCHW ones.
        layout = torch.contiguous_format if x.is_cuda else torch.channels_last
        image_maps = merged_conv_pair(x.contiguous(memory_format=layout), *self.image_branch)
        feature_maps = pointwise_conv(feature, self.feature_branch, self.feature_scale)
        # Without gradient on the CPU the image side's temporaries are written into each other's memory
        # (§4.9); explicit `out=` products take no part in autocast, so not under it.
        recycle = not (torch.is_grad_enabled() or x.is_cuda or torch.is_autocast_enabled(x.device.type))
        return factored_attention(image_maps, feature_maps, self.transform, self.patch_size, recycle)

    def correct(self, logits: Tensor, attention: FactoredAttention) -> Tensor:
        return modify_output(logits, attention, attention.stride, self.patch_size)


# --------------------------------------------------------------------------------- §2 output correction
def one_hot(labels: Tensor, classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(B, H, W) class indices -> (B, C, H, W) one-hot in `dtype`; indices outside [0, C) give all zeros.

    Scattered straight into channel-first layout: F.one_hot's int64 channel-last result would need a permuted
    copy and a cast, several times the memory traffic at full resolution.
    """
    valid = (labels >= 0) & (labels < classes)
    out = torch.zeros(labels.shape[0], classes, *labels.shape[1:], dtype=dtype, device=labels.device)
    return out.scatter_(1, labels.clamp(0, classes - 1).unsqueeze(1), valid.unsqueeze(1).to(dtype))


def pooled_prediction_patches(logits: Tensor, stride: int, patch_size: int) -> Tensor:
    """patches(avg_pool(one_hot(argmax_c logits), s)): (B, C, Lf, P), no gradient (§2), as counts (§4.5)."""
    with torch.no_grad():
        return patches(pooled_one_hot(class_argmax(logits), logits.shape[1], stride, logits.dtype), patch_size)


def modify_output(logits: Tensor, attention: Tensor | FactoredAttention, stride: int, patch_size: int) -> Tensor:
    """z' = z * (1 + R), R = fold((AFMA / n) @ patches(avg_pool(one_hot(argmax z), s))) (§2, §4.3).

    `attention` is the dense (B, C, Li, Lf) AFMA or a `FactoredAttention`; with the factors, the product is
    reassociated as image @ (feature^T @ pooled) / P, a P x P inner matrix instead of an Li x Lf one.
    """
    pooled = pooled_prediction_patches(logits, stride, patch_size)
    if isinstance(attention, FactoredAttention):
        mixed = attention.feature.transpose(-1, -2) @ pooled.to(attention.feature.dtype)
        counts = attention.row_nonzeros()  # before the product: both may use the spare memory, one after the other
        spare = attention.spare
        into = None if spare is None else recycled(spare, attention.image.shape, attention.image.dtype)
        # In place on the product's own output: the product keeps its inputs, not its output, for backward.
        correction = torch.matmul(attention.image, mixed, out=into).div_(attention.patch_area * (counts + COUNT_EPS))
    else:
        counts = (attention != 0).sum(-1, keepdim=True).to(attention.dtype) + COUNT_EPS
        correction = (attention / counts) @ pooled.to(attention.dtype)
    return add_folded_product(logits, correction.to(logits.dtype), patch_size)


# ----------------------------------------------------------------------------------- §3 gold and loss
@dataclass
class FactoredGold:
    """Gold AFMA = image @ feature^T / P with image = patches(y), feature = patches(avg_pool(y, s))."""

    image: Tensor
    feature: Tensor

    def dense(self) -> Tensor:
        return self.image @ self.feature.transpose(-1, -2) / self.image.shape[-1]


def factored_gold(target_onehot: Tensor, stride: int, patch_size: int) -> FactoredGold:
    return FactoredGold(
        image=patches(target_onehot, patch_size),
        feature=patches(F.avg_pool2d(target_onehot, stride, stride), patch_size),
    )


def gold_afma(target_onehot: Tensor, stride: int, patch_size: int) -> Tensor:
    """The gold AFMA from the one-hot target (B, C, H, W): (B, C, Li, Lf) (§3)."""
    return factored_gold(target_onehot, stride, patch_size).dense()


def attention_mse(attention: Tensor | FactoredAttention, gold: FactoredGold) -> Tensor:
    """mean((AFMA - gold)^2) (§3), in float32 at least (float64 stays float64), outside any autocast.

    With the factors it is computed through the Gram identity (§4.3) without forming either matrix.
    """
    dtype = torch.promote_types(gold.image.dtype, torch.float32)
    with torch.autocast(gold.image.device.type, enabled=False):  # autocast would round the products to 16 bits
        if not isinstance(attention, FactoredAttention):
            return F.mse_loss(attention.to(dtype), gold.dense().to(dtype))
        dtype = torch.promote_types(dtype, attention.image.dtype)
        ai, af = attention.image.to(dtype), attention.feature.to(dtype)
        gi, gf = gold.image.to(dtype), gold.feature.to(dtype)
        squared = gram_inner(ai, af, ai, af) - 2 * gram_inner(ai, af, gi, gf) + gram_inner(gi, gf, gi, gf)
        return squared.clamp_min(0) / (attention.patch_area**2 * attention.shape.numel())


# --------------------------------------------------------------------------------- §4 exact speed-ups
def merged_conv_pair(x: Tensor, first: nn.Conv2d, second: nn.Conv2d) -> Tensor:
    """second(first(x)) for two stride-1, 'same'-padded convolutions with no activation between, as one (§4.1).

    With nothing between them the pair is a single (k1 + k2 - 1)-wide convolution, here 9x9 from 3 to C
    channels instead of 7x7 to 64 then 3x3 to C: about a fifth of the work, and no 64-channel map at full
    resolution kept for backward. Only a border of width p2 differs: the pair zero-pads its intermediate
    map, while the merged kernel sees that map extended past the border. The extended intermediate is
    computed on those thin strips alone and its contribution subtracted, so the result equals the pair's
    at every pixel.
    """
    for conv in (first, second):
        k = conv.kernel_size[0]
        assert conv.kernel_size == (k, k) and k % 2 == 1 and conv.padding == (k // 2, k // 2), "'same' odd kernels"
        assert conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1, "plain stride-1 convolutions"
    p1, p2 = first.padding[0], second.padding[0]
    r = p1 + p2
    # merged[o, i] = sum_m second[o, m] (full convolution) first[m, i]: a cross-correlation with the flip.
    weight = F.conv2d(first.weight.transpose(0, 1), second.weight.flip(-1, -2), padding=2 * p2).transpose(0, 1)
    bias = second.bias + second.weight.sum((2, 3)) @ first.bias
    out = F.conv2d(x, weight, bias, padding=r)

    def beyond(strip, padding):  # the intermediate map on the rows or columns just past one border
        return F.conv2d(F.pad(strip, padding), first.weight, first.bias)

    def contribution(strip, padding):  # what the second convolution read from that strip
        return F.conv2d(F.pad(strip, padding), second.weight)

    top, bottom = beyond(x[:, :, :p1], (r, r, r, 0)), beyond(x[:, :, -p1:], (r, r, 0, r))
    left, right = beyond(x[..., :p1], (r, 0, p1, p1)), beyond(x[..., -p1:], (0, r, p1, p1))
    b, c, h, w = out.shape
    every = (torch.arange(b, device=x.device).view(b, 1, 1, 1), torch.arange(c, device=x.device).view(1, c, 1, 1))
    rows, cols = torch.arange(h, device=x.device).view(h, 1), torch.arange(w, device=x.device)
    first, last = slice(None, p2), slice(-p2, None)
    # Subtracted by index into the map itself, not through slice views: each in-place write to a view costs
    # the backward a copy of the whole gradient, where index_put_ with accumulate passes it through.
    for strip, padding, (rows_at, cols_at) in (
        (top, (0, 0, 0, 2 * p2), (rows[first], cols)),
        (bottom, (0, 0, 2 * p2, 0), (rows[last], cols)),
        (left, (0, 2 * p2, p2, p2), (rows, cols[first])),  # corners belong to the top and bottom strips
        (right, (2 * p2, 0, p2, p2), (rows, cols[last])),
    ):
        out.index_put_((*every, rows_at, cols_at), -contribution(strip, padding), accumulate=True)
    return out


def merged_transform_weight(transform: nn.Module) -> Tensor:
    """(P, P) W with T(rows) = relu(rows @ W), for T = Linear(P, 2P), Linear(2P, P), both without bias, ReLU (§4.4).

    With nothing between the two linear maps, x W1^T W2^T = x (W2 W1)^T: P^2 multiply-adds per row instead of
    4 P^2, forward and backward alike, and no 2P-wide intermediate kept for backward. The product of the
    two small weights is formed on every call, so the gradients still reach both.
    """
    first, second, activation = transform
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear) and isinstance(activation, nn.ReLU), \
        "T must be Linear, Linear, ReLU"
    assert first.bias is None and second.bias is None, "T's linear maps have no bias"
    return (second.weight @ first.weight).transpose(0, 1)


def pointwise_conv(x: Tensor, conv: nn.Conv2d, scale: float) -> Tensor:
    """conv(x) * scale for a 1x1 convolution, as one batched matrix product over the channels (§4.8).

    A 1x1 convolution is (C_out, C_in) @ (C_in, H W) per image; as a product it reads an NCHW or NHWC map in
    place, where oneDNN first reorders its whole input (7x the time for 64 channels at 320x480). `scale` is a
    power of two (1 / 4**d), so folding it into the weight and the bias is exact.
    """
    assert conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0), "a 1x1 convolution"
    assert conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is not None, "plain, with a bias"
    assert math.frexp(scale)[0] == 0.5, "the scale must be a power of two to fold into the weights exactly"
    b, _, h, w = x.shape
    weight, bias = conv.weight.flatten(1) * scale, conv.bias * scale
    out = torch.baddbmm(bias.view(1, -1, 1).expand(b, -1, 1), weight.expand(b, -1, -1), x.flatten(2))
    return out.view(b, -1, h, w)


# Elements of one block of the non-zero count's (matrices, rows, Lf) product: bounds its transient buffer whatever the
# batch, classes and input size. Float products: 2**24 (32 MB in 16 bits); smaller ones were measured slower on the
# CPU (1.6x at 2**19), each call packing its right factor again. int8 products: 2**20 (4 MB of int32 sums, which
# stay in cache while they are counted), 1.6x faster than 2**24 at depth 1, 640x960.
COUNT_BLOCK_ELEMENTS = 1 << 24
COUNT_BLOCK_ELEMENTS_INT8 = 1 << 20


def support_dtype(device: torch.device) -> torch.dtype:
    """The type the 0/1 supports are multiplied in: the fastest one, as any is exact for the count.

    int8 products sum exactly into int32. In a float type the products are 0 or 1 exactly and their sum is 0
    exactly when all of them are: rounding never takes a sum of non-negative terms to 0 (an overflow gives +inf,
    non-zero too). CUDA multiplies float16 fastest. A CPU with VNNI int8 dot products (AVX512-VNNI, AVX-VNNI,
    AMX) multiplies int8 about twice as fast as bfloat16 (`torch._int_mm`, oneDNN), and bfloat16 several times
    faster than float32 where it has native bf16; elsewhere int8 and bfloat16 would be emulated: float32 there.
    """
    if device.type == "cuda":
        return torch.float16
    if torch.cpu._is_vnni_supported() and hasattr(torch, "_int_mm"):
        return torch.int8
    return torch.bfloat16 if torch.cpu._is_avx512_bf16_supported() else torch.float32


def count_row_nonzeros(image: Tensor, feature: Tensor, spare: Tensor | None = None,
                       dtype: torch.dtype | None = None) -> Tensor:
    """(B, C, Li, 1): non-zero entries per row of image @ feature^T, exactly and without gradient (§4.2).

    Assumes both factors are non-negative (T ends in a ReLU): then an entry is a sum of non-negative
    products, non-zero exactly when the supports of the two rows meet. The overlaps of the 0/1 supports are
    multiplied in row blocks (`COUNT_BLOCK_ELEMENTS`), in `dtype` (by default `support_dtype`). An int8
    product gives each overlap as an int32; a non-negative float is non-zero iff the integer under its bits is
    (sums of +0 and positive products give no -0). Either way min(integer, 1) summed over a row is its count:
    one in-place pass over the block while it is in cache, no bool tensor, no cast. int8 supports are `gt`'s
    bools read as bytes (True is 1), so they cost no cast either. Packing the supports into int64 words and
    counting pairs with a non-zero AND was measured slower on the CPU (2.0 s against 0.64 s for float32
    products at depth 1, 640x960): each eager elementwise step is one more pass over all Li x Lf pairs, where
    the product's inner loop stays in registers.
    """
    with torch.no_grad():
        if not image.is_cuda:  # on CUDA the check would be a host sync every forward; the ReLU guarantees it
            assert all(t.numel() == 0 or t.min() >= 0 for t in (image, feature)), "the count needs non-negative factors"
        b, c, li, area = image.shape
        lf, bc = feature.shape[2], b * c
        dtype = dtype or support_dtype(image.device)
        exact_ints = not dtype.is_floating_point
        assert not (exact_ints and image.is_cuda), "int8 supports are multiplied on the CPU (float16 on CUDA)"
        flags = torch.bool if exact_ints else dtype  # what `gt` writes: bools become int8 by a view
        sums = torch.int32 if exact_ints else dtype
        bits = torch.int16 if sums.itemsize == 2 else torch.int32
        # A row's count is at most Lf: int16 sums 16-bit words faster; 32-bit words sum into int32 without a cast.
        total = torch.int16 if bits == torch.int16 and lf < 2**15 else torch.int32
        into = image.new_empty(image.shape, dtype=flags) if spare is None else recycled(spare, image.shape, flags)
        support = torch.gt(image, 0, out=into).view(dtype).view(bc, li, area)  # no bool copy
        # (BC, P, Lf), in fresh memory: its strides are then the usual ones even for a size-1 P or Lf, where
        # `contiguous()` keeps a transpose's; `_int_mm` silently leaves `out` unwritten for such strides.
        feature_t = torch.empty(bc, area, lf, dtype=dtype, device=image.device)
        feature_t.copy_((feature > 0).reshape(bc, lf, area).transpose(1, 2))
        matrices = max(1, bc) if image.is_cuda else 1  # the CPU's bmm into `out` is slower than one mm per matrix
        block = COUNT_BLOCK_ELEMENTS_INT8 if exact_ints else COUNT_BLOCK_ELEMENTS
        rows = max(1, block // (matrices * max(1, lf)))
        buffer = torch.empty(matrices * min(rows, li) * lf, dtype=sums, device=image.device)
        counts = torch.empty(bc, li, dtype=total, device=image.device)
        product = torch._int_mm if exact_ints else torch.mm
        for m in range(0, bc, matrices):
            for i in range(0, li, rows):
                n = min(rows, li - i)
                overlaps = buffer[: matrices * n * lf].view(matrices, n, lf)
                if image.is_cuda:
                    torch.bmm(support[m : m + matrices, i : i + n], feature_t[m : m + matrices], out=overlaps)
                else:
                    product(support[m, i : i + n], feature_t[m], out=overlaps[0])
                torch.sum(overlaps.view(bits).clamp_(max=1), -1, dtype=total, out=counts[m : m + matrices, i : i + n])
        # float32 at least: a bf16 count of a few thousand would already be rounded.
        return counts.view(b, c, li, 1).to(torch.promote_types(image.dtype, torch.float32))


def class_argmax(logits: Tensor) -> Tensor:
    """logits.argmax(1), exactly, through two vectorised reductions over the channels (§2's one-hot, §4.7).

    argmax over the C channels is a reduction of C values per pixel that the CPU runs one pixel at a time
    (about 20 ms for 12 x 640 x 960, over 3x the rest of this function), while amax over the same dimension
    runs across pixels in vector registers. So: the maximum, the channels that reach it, and the lowest of
    them as C - 1 - the largest of (C - 1 - index) over those channels, which is argmax's rule for ties. A
    NaN is argmax's maximum (its first NaN wins); amax propagates it and no channel compares equal to it, so
    a pixel with a NaN is marked instead (on CUDA, branch-free) or the CPU falls back to argmax itself.
    """
    c = logits.shape[1]
    if c > 256:  # the channel ranks are held in 8 bits
        return logits.argmax(1)
    top = logits.amax(1, keepdim=True)
    at_top = torch.ge(logits, top)
    if logits.is_cuda:  # a host-side NaN test would wait for the device on every forward
        at_top.logical_or_(logits.isnan())
    elif top.isnan().any():
        return logits.argmax(1)
    reversed_rank = torch.arange(c - 1, -1, -1, dtype=torch.uint8, device=logits.device).view(1, c, 1, 1)
    return (c - 1 - at_top.view(torch.uint8).mul_(reversed_rank).amax(1)).long()


def pooled_one_hot(labels: Tensor, classes: int, stride: int, dtype: torch.dtype) -> Tensor:
    """avg_pool(one_hot(labels), s) (B, C, H // s, W // s), from one bincount of (image, class, cell) indices (§4.5).

    The pool of a one-hot is, per class and s x s cell, the number of its pixels in the cell over s^2: counting
    them directly skips the (B, C, H, W) one-hot and its pool, C times the memory traffic of the labels. The
    same quotient of the same integer count in `dtype` as the pool computes. Indices outside [0, C) never
    occur here: the labels come from an argmax over the C classes.
    """
    b, h, w = labels.shape
    hs, ws = h // stride, w // stride
    cells = labels[:, : hs * stride, : ws * stride].reshape(b, hs, stride, ws, stride)
    first = torch.arange(b, device=labels.device).view(b, 1, 1, 1, 1) * (classes * hs * ws) \
        + torch.arange(hs, device=labels.device).view(hs, 1, 1, 1) * ws + torch.arange(ws, device=labels.device).view(ws, 1)
    counts = torch.bincount((cells * (hs * ws) + first).flatten(), minlength=b * classes * hs * ws)
    return counts.view(b, classes, hs, ws).to(dtype).div_(stride * stride)  # in place: `to` made a new map


def add_folded_product(logits: Tensor, rows: Tensor, patch_size: int) -> Tensor:
    """logits * fold(rows) + logits (§4.6): fold is read as a permuted view, never copied.

    Pixels outside whole patches have R = 0 and keep their logits.
    """
    b, c, h, w = logits.shape
    gh, gw = patch_grid(h, w, patch_size)
    p = patch_size
    if gh * gw == 0:
        return logits.clone()
    z = logits[:, :, : gh * p, : gw * p].unflatten(2, (gh, p)).unflatten(4, (gw, p))  # (B, C, gh, p, gw, p) view
    r = rows.view(b, c, gh, gw, p, p).transpose(3, 4)  # fold_patches' permutation, as a view
    # z * r + z as a product and an in-place sum: addcmul's one pass would cost its backward two products by 1.
    corrected = z.mul(r).add_(z).reshape(b, c, gh * p, gw * p)
    if (gh * p, gw * p) == (h, w):
        return corrected
    return torch.cat([torch.cat([corrected, logits[:, :, : gh * p, gw * p :]], 3), logits[:, :, gh * p :]], 2)


def gram_inner(a_left: Tensor, a_right: Tensor, b_left: Tensor, b_right: Tensor) -> Tensor:
    """<a_left a_right^T, b_left b_right^T> summed over all entries, through two P x P matrices (§4.3).

    trace((Al Ar^T)^T (Bl Br^T)) = sum((Al^T Bl) * (Ar^T Br)): exact algebra, only rounding differs.
    """
    return ((a_left.transpose(-1, -2) @ b_left) * (a_right.transpose(-1, -2) @ b_right)).sum()


def recycled(dead: Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A contiguous tensor of `shape` and `dtype` over the memory of `dead`, which no one reads again (§4.9).

    PyTorch's CPU allocator caches nothing: every fresh map of a few tens of MB is new pages from the OS, one
    page fault per 4 kB on first touch, and on a loaded VM that costs more than the pass that fills them.
    """
    storage = dead.untyped_storage()
    assert math.prod(shape) * dtype.itemsize <= storage.nbytes(), "the recycled memory is too small"
    return dead.new_empty(0, dtype=dtype).set_(storage, 0, shape)
