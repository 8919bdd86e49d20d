"""Across Feature Map Attention (Sang et al., TPAMI 2023): the method in plain PyTorch, in the order of the paper.

docs/METHOD.md describes it with its equations; the section numbers below (§) refer to that file.
Shapes: B batch, C classes, p the patch size, P = p * p, Li / Lf the number of whole p x p patches of the
image-resolution / feature-resolution maps, s the feature map's stride.

    §1  patches, the two branches and the shared patch transform T  ->  AFMA = T(img) T(fea)^T / P
    §2  the output correction  z' = z * (1 + R)
    §3  the gold AFMA and the MSE that trains the attention

The AFMA of one (image, class) is a product of two thin matrices, so `FactoredAttention` keeps the two
factors: the correction and the MSE then cost O((Li + Lf) P^2) instead of O(Li Lf P) (the reassociation of
§4.3), and the Li x Lf matrix is only formed when someone asks (`.dense()`) and, without gradient, to count
each row's non-zeros.

This file is the path torch.compile, torch.export and the ONNX exporter take: no branch on tensor values, no
wait for the device, no private API, and it depends on nothing else in this project (copy it alone into
another one). Beside it, models/afma_kernels.py computes the same numbers faster in eager mode (the exact
speed-ups of §4); `AFMA` runs those where that file is present and nothing is compiling or tracing.
The public functions `patch_attention`, `modify_output` and `gold_afma` take and return dense tensors too;
`models/reference.py` is the slow literal transcription both paths are tested against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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

    Equal to F.unfold(kernel=p, stride=p) per channel, as a reshape and a permutation. The remainder is cut off by
    a negative padding, a new map whatever the size: a slice would be a view whose reshape copies or not
    depending on whether a remainder exists, and torch.export would fix that choice into the graph.
    """
    b, c, h, w = maps.shape
    gh, gw = patch_grid(h, w, patch_size)
    p = patch_size
    cropped = F.pad(maps, (0, gw * p - w, 0, gh * p - h))
    return cropped.reshape(b, c, gh, p, gw, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, gh * gw, p * p)


def fold_patches(rows: Tensor, size: tuple[int, int], patch_size: int) -> Tensor:
    """Inverse of `patches`: (B, C, L, P) -> (B, C, H, W); pixels outside whole patches are 0.

    Padded even by zero rows and columns: a branch on the size would fix it when the model is exported.
    """
    b, c, _, _ = rows.shape
    h, w = size
    gh, gw = patch_grid(h, w, patch_size)
    p = patch_size
    image = rows.reshape(b, c, gh, gw, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, gh * p, gw * p)
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
        """(B, C, Li, 1): the number of non-zero entries in each AFMA row (§2), without gradient."""
        return row_nonzeros(self.image, self.feature)


def factored_attention(image_maps: Tensor, feature_maps: Tensor, transform: nn.Module,
                       patch_size: int) -> FactoredAttention:
    """Apply the one shared patch transform T to the patches of both branches (§1.3-1.4).

    The stride is measured, not assumed: dilated encoders keep stride 8 past depth 3.
    """
    return FactoredAttention(
        image=transform(patches(image_maps, patch_size)),
        feature=transform(patches(feature_maps, patch_size)),
        grid=patch_grid(*image_maps.shape[-2:], patch_size),
        stride=image_maps.shape[-2] // feature_maps.shape[-2],
    )


def patch_attention(img_maps: Tensor, fea_maps: Tensor, transform: nn.Module, patch_size: int) -> Tensor:
    """AFMA = T(patches(img)) @ T(patches(fea))^T / P: (B, C, Li, Lf), every entry >= 0, no softmax."""
    return factored_attention(img_maps, fea_maps, transform, patch_size).dense()


class AFMA(nn.Module):
    """The learnable part: image branch, feature branch and the one shared patch transform T (§1).

    forward(x, feature) -> FactoredAttention; `correct(logits, attention)` applies §2. `in_channels` is the
    input image's (3 for RGB). Set `use_kernels = False` to run the plain path in eager mode too.
    """

    def __init__(self, feature_channels: int, classes: int, depth: int, patch_size: int = 10, in_channels: int = 3):
        super().__init__()
        area = patch_size * patch_size
        self.depth = depth
        self.patch_size = patch_size
        self.use_kernels = True
        # Two linear convolutions with nothing between them (§1.1).
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
            nn.ReLU(),  # every AFMA entry is then >= 0, which the row count of §4.2 relies on
        )

    def kernels(self):
        """models/afma_kernels.py where it is present, enabled and applies (eager mode), else None."""
        return _kernels if self.use_kernels and _kernels is not None and _kernels.applies() else None

    def forward(self, x: Tensor, feature: Tensor) -> FactoredAttention:
        if kernels := self.kernels():
            return kernels.attention(self, x, feature)
        image_maps = self.image_branch(x)
        feature_maps = self.feature_branch(feature) * self.feature_scale  # a power of two: exact
        return factored_attention(image_maps, feature_maps, self.transform, self.patch_size)

    def correct(self, logits: Tensor, attention: FactoredAttention) -> Tensor:
        if kernels := self.kernels():
            return kernels.modify_output(logits, attention, attention.stride, self.patch_size)
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
    """patches(avg_pool(one_hot(argmax_c logits), s)): (B, C, Lf, P), no gradient (§2)."""
    logits = logits.detach()
    classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
    prediction = (logits.argmax(1, keepdim=True) == classes).to(logits.dtype)  # the one-hot, channel-first
    return patches(F.avg_pool2d(prediction, stride, stride), patch_size)


def row_nonzeros(image: Tensor, feature: Tensor) -> Tensor:
    """(B, C, Li, 1): non-zero entries per row of image @ feature^T, without gradient (§2).

    Both factors are non-negative (T ends in a ReLU), so an entry is non-zero exactly when the supports of
    its two rows meet: the supports' product is counted, which no rounding or underflow can take to 0 (§4.2).
    """
    dtype = torch.promote_types(image.dtype, torch.float32)
    support_image, support_feature = (image.detach() > 0).to(dtype), (feature.detach() > 0).to(dtype)
    overlaps = support_image @ support_feature.transpose(-1, -2)
    return (overlaps > 0).sum(-1, keepdim=True).to(dtype)


def modify_output(logits: Tensor, attention: Tensor | FactoredAttention, stride: int, patch_size: int) -> Tensor:
    """z' = z * (1 + R), R = fold((AFMA / n) @ patches(avg_pool(one_hot(argmax z), s))) (§2).

    `attention` is the dense (B, C, Li, Lf) AFMA or a `FactoredAttention`; with the factors, the product is
    reassociated as image @ (feature^T @ pooled) / P, a P x P inner matrix instead of an Li x Lf one (§4.3).
    """
    pooled = pooled_prediction_patches(logits, stride, patch_size)
    if isinstance(attention, FactoredAttention):
        counts = attention.row_nonzeros()
        mixed = attention.feature.transpose(-1, -2) @ pooled.to(attention.feature.dtype)
        correction = attention.image @ mixed / (attention.patch_area * (counts + COUNT_EPS))
    else:
        counts = (attention != 0).sum(-1, keepdim=True).to(attention.dtype) + COUNT_EPS
        correction = (attention / counts) @ pooled.to(attention.dtype)
    r = fold_patches(correction.to(logits.dtype), logits.shape[-2:], patch_size)
    return logits * r + logits


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


def gram_inner(a_left: Tensor, a_right: Tensor, b_left: Tensor, b_right: Tensor) -> Tensor:
    """<a_left a_right^T, b_left b_right^T> summed over all entries, through two P x P matrices (§4.3).

    trace((Al Ar^T)^T (Bl Br^T)) = sum((Al^T Bl) * (Ar^T Br)): exact algebra, only rounding differs.
    """
    return ((a_left.transpose(-1, -2) @ b_left) * (a_right.transpose(-1, -2) @ b_right)).sum()


# The exact speed-ups of §4, where models/afma_kernels.py sits beside this file (it imports the names above, so it
# is imported last).
try:
    from . import afma_kernels as _kernels
except ImportError:  # this file copied alone into another project: the plain path everywhere
    _kernels = None
