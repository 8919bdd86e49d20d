"""The method written literally, class by class: the yardstick that models/afma.py is tested against.

A transcription of docs/METHOD.md §1-3 alone (F.unfold / F.fold per channel, a Python loop over classes, the
dense Li x Lf matrix, count_nonzero), deliberately sharing no code with models/afma.py. Slow and memory-hungry
by design: tests compare against it in float64, and benchmarks/afma_speed.py times it as "literal".
"""
import torch
import torch.nn.functional as F


def literal_patches(channel, p):
    """(B, h, w) -> (B, L, P) with F.unfold, remainder rows and columns dropped."""
    return F.unfold(channel.unsqueeze(1), kernel_size=p, stride=p).transpose(1, 2)


def literal_fold(rows, size, p):
    """(B, L, P) -> (B, H, W): F.fold over the whole-patch area, zeros outside it."""
    h, w = size
    gh, gw = h // p, w // p
    folded = F.fold(rows.transpose(1, 2), output_size=(gh * p, gw * p), kernel_size=p, stride=p)[:, 0]
    out = rows.new_zeros(rows.shape[0], h, w)
    out[:, : gh * p, : gw * p] = folded
    return out


def literal_patch_attention(img, fea, transform, p):
    per_class = []
    for c in range(img.shape[1]):
        a_img = transform(literal_patches(img[:, c], p))
        a_fea = transform(literal_patches(fea[:, c], p))
        per_class.append(a_img @ a_fea.transpose(1, 2) / (p * p))
    return torch.stack(per_class, 1)


def literal_modify_output(z, afma, stride, p):
    classes = z.shape[1]
    q = F.one_hot(z.detach().argmax(1), classes).permute(0, 3, 1, 2).to(z.dtype)
    pooled = F.avg_pool2d(q, stride, stride)
    corrected = []
    for c in range(classes):
        a = afma[:, c]
        n = torch.count_nonzero(a, dim=-1).to(a.dtype).unsqueeze(-1) + 1e-5
        r = (a / n) @ literal_patches(pooled[:, c], p)
        r = literal_fold(r, z.shape[-2:], p)
        corrected.append(z[:, c] * r + z[:, c])
    return torch.stack(corrected, 1)


def literal_gold_afma(y, stride, p):
    pooled = F.avg_pool2d(y, stride, stride)
    return torch.stack(
        [literal_patches(y[:, c], p) @ literal_patches(pooled[:, c], p).transpose(1, 2) / (p * p) for c in range(y.shape[1])],
        1,
    )


def literal_loss(z_corrected, afma, target, stride, p, class_weights=None):
    classes = z_corrected.shape[1]
    y = F.one_hot(target, classes).permute(0, 3, 1, 2).to(afma.dtype)
    nll = F.nll_loss(F.log_softmax(z_corrected, 1), target, weight=class_weights)
    return 5 * nll + F.mse_loss(afma, literal_gold_afma(y, stride, p))


def literal_afma_forward(module, x, feature, z, p):
    """The whole AFMA of a model, literally: branches, attention, correction. Returns (z', AFMA, stride)."""
    img = module.image_branch[1](module.image_branch[0](x))
    fea = module.feature_branch(feature) / 4**module.depth
    afma = literal_patch_attention(img, fea, module.transform, p)
    stride = x.shape[-2] // feature.shape[-2]
    return literal_modify_output(z, afma, stride, p), afma, stride
