"""The exact speed-ups of docs/METHOD.md §4: the same AFMA as models/afma.py, computed faster in eager PyTorch.

models/afma.py is the method in plain PyTorch, in the paper's order; `AFMA` runs it when it is compiled, exported
or traced (`applies`), and these kernels otherwise. Each one is an identity in real arithmetic (§4.1-§4.8) or a
memory plan that changes no number (§4.9), tested against models/reference.py in float64 like the plain path:

    4.1 the merged image-branch convolution          4.6 the fold read as a view
    4.2 the blocked non-zero count from the supports 4.7 the one-hot's argmax from two vectorised maxima
        (int8 or bf16 where the CPU multiplies them) 4.8 the feature branch's 1x1 convolution as a product
    4.3 the factored product (shared with afma.py)   4.9 without gradient on the CPU, temporaries written
    4.4 T's two linear maps as one matrix                into each other's memory
    4.5 the pooled one-hot from counts

Each kernel that needs a private PyTorch API (`torch._int_mm`, `torch.cpu._is_vnni_supported`,
`torch.cpu._is_avx512_bf16_supported`) looks for it first and takes a public route where a release lacks it.
Here the method may branch on data and wait for the device: these functions never run under torch.compile or
export.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .afma import COUNT_EPS, FactoredAttention, modify_output as plain_modify_output, patch_grid


def applies() -> bool:
    """Whether AFMA runs these kernels: in eager mode, not while torch.compile, torch.export or a tracer records it
    (they need graphs without data-dependent branches, host synchronisation or recycled memory)."""
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting())


# ------------------------------------------------------------------------------------ the module's forward
@dataclass
class KernelAttention(FactoredAttention):
    """A `FactoredAttention` with memory of the image factor's size that no one reads again, for the count's
    supports and the correction's product to be written into: set without gradient on the CPU, where a fresh map
    costs page faults (§4.9); None elsewhere."""

    spare: Tensor | None = field(default=None, repr=False)

    def row_nonzeros(self) -> Tensor:
        return count_row_nonzeros(self.image, self.feature, self.spare)


def attention(module: nn.Module, x: Tensor, feature: Tensor) -> KernelAttention:
    """`AFMA.forward` through §4.1, §4.4, §4.8 and, without gradient on the CPU, §4.9."""
    # The 9x9 convolution from the input's channels in the layout its library runs fastest, whatever the model's:
    # oneDNN's NHWC kernel takes about half the time of its NCHW one (more than cutting the NHWC maps into
    # patches costs), cuDNN's NHWC kernels are several times slower than its NCHW ones.
    layout = torch.contiguous_format if x.is_cuda else torch.channels_last
    image_maps = merged_conv_pair(x.contiguous(memory_format=layout), *module.image_branch)
    feature_maps = pointwise_conv(feature, module.feature_branch, module.feature_scale)
    # Without gradient on the CPU the image side's temporaries are written into each other's memory
    # (§4.9); explicit `out=` products take no part in autocast, so not under it.
    recycle = not (torch.is_grad_enabled() or x.is_cuda or torch.is_autocast_enabled(x.device.type))
    return factored_attention(image_maps, feature_maps, module.transform, module.patch_size, recycle)


def factored_attention(image_maps: Tensor, feature_maps: Tensor, transform: nn.Module, patch_size: int,
                       recycle: bool = False) -> KernelAttention:
    """`afma.factored_attention` with T's two linear maps as one P x P matrix (§4.4).

    `recycle` (no gradient): `image_maps` is the caller's temporary, overwritten by the image factor, and the copy
    of its patches becomes the attention's `spare` (§4.9).
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
    return KernelAttention(
        image=image.relu_(),  # in place: the product keeps its inputs
        feature=(patches(feature_maps, patch_size) @ weight).relu_(),
        grid=patch_grid(*image_maps.shape[-2:], patch_size),
        stride=image_maps.shape[-2] // feature_maps.shape[-2],
        spare=spare,
    )


def patches(maps: Tensor, patch_size: int) -> Tensor:
    """`afma.patches` through a view of the whole patches: one copy (the permutation), not two."""
    b, c, h, w = maps.shape
    gh, gw = patch_grid(h, w, patch_size)
    p = patch_size
    cropped = maps[:, :, : gh * p, : gw * p]
    return cropped.reshape(b, c, gh, p, gw, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, gh * gw, p * p)


def pooled_prediction_patches(logits: Tensor, stride: int, patch_size: int) -> Tensor:
    """`afma.pooled_prediction_patches` through §4.7's argmax and §4.5's counts, no gradient."""
    with torch.no_grad():
        return patches(pooled_one_hot(class_argmax(logits), logits.shape[1], stride, logits.dtype), patch_size)


def modify_output(logits: Tensor, attention: Tensor | FactoredAttention, stride: int, patch_size: int) -> Tensor:
    """`afma.modify_output` with the count of §4.2, the products written into spare memory (§4.9) and the
    fold read as a view (§4.6); a dense AFMA takes the plain path."""
    if not isinstance(attention, FactoredAttention):
        return plain_modify_output(logits, attention, stride, patch_size)
    pooled = pooled_prediction_patches(logits, stride, patch_size)
    mixed = attention.feature.transpose(-1, -2) @ pooled.to(attention.feature.dtype)
    spare = getattr(attention, "spare", None)
    # Before the product: both may use the spare memory, one after the other.
    counts = count_row_nonzeros(attention.image, attention.feature, spare)
    into = None if spare is None else recycled(spare, attention.image.shape, attention.image.dtype)
    # In place on the product's own output: the product keeps its inputs, not its output, for backward.
    correction = torch.matmul(attention.image, mixed, out=into).div_(attention.patch_area * (counts + COUNT_EPS))
    return add_folded_product(logits, correction.to(logits.dtype), patch_size)


# --------------------------------------------------------------------------------------- the kernels
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
    if cpu_supports("_is_vnni_supported") and hasattr(torch, "_int_mm"):
        return torch.int8
    return torch.bfloat16 if cpu_supports("_is_avx512_bf16_supported") else torch.float32


def cpu_supports(feature: str) -> bool:
    """torch.cpu's private test for an instruction set, False where this PyTorch release has none by that name."""
    test = getattr(torch.cpu, feature, None)
    return bool(test()) if callable(test) else False


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
        assert not (exact_ints and not hasattr(torch, "_int_mm")), "int8 supports need torch._int_mm: pick another type"
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
        product = int8_mm if exact_ints else torch.mm
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


def recycled(dead: Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A contiguous tensor of `shape` and `dtype` over the memory of `dead`, which no one reads again (§4.9).

    PyTorch's CPU allocator caches nothing: every fresh map of a few tens of MB is new pages from the OS, one
    page fault per 4 kB on first touch, and on a loaded VM that costs more than the pass that fills them.
    """
    storage = dead.untyped_storage()
    assert math.prod(shape) * dtype.itemsize <= storage.nbytes(), "the recycled memory is too small"
    return dead.new_empty(0, dtype=dtype).set_(storage, 0, shape)


def int8_mm(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """(m, k) int8 @ (k, n) int8 -> int32 `out`, exactly (torch._int_mm, looked up at call time: private API)."""
    return torch._int_mm(a, b, out=out)
