"""Draw the AFMA method (docs/METHOD.md §1-3) as a box-and-arrow diagram: figures/afma_method.png.

Run from anywhere: python figures/make_method_diagram.py
Coordinates are in a 16 x 9 data space that maps 1:1 onto a 16 x 9 inch figure at 100 dpi (1600 x 900 px).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "afma_method.png"
W, H = 1.8, 0.78  # default box size
COLOURS = {
    "smp": "#d9d9d9", "image": "#cfe2f3", "feature": "#d9ead3", "shared": "#fce5cd",
    "afma": "#d9d2e9", "output": "#fff2cc", "loss": "#f4cccc", "label": "#eeeeee",
}
# column centres (boxes 1.8 wide, 0.3 apart; T, AFMA and R wider) and row heights
X = [0.95, 3.0, 5.1, 7.2, 9.35, 12.2, 14.45]
Y_IMG, Y_FEA, Y_OUT, Y_GOLD = 7.45, 5.75, 3.55, 1.55


def box(ax, x, y, text, kind, w=W, h=H, size=10.5):
    """A rounded box centred on (x, y); returns its edges for arrows."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=COLOURS[kind], edgecolor="#444444", linewidth=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, linespacing=1.35)
    return {"l": (x - w / 2, y), "r": (x + w / 2, y), "t": (x, y + h / 2), "b": (x, y - h / 2)}


def arrow(ax, start, end, label=None, dashed=False, label_offset=(0, 0.13)):
    """A straight arrow, optionally labelled near its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, linewidth=1.3,
                                 color="#333333", linestyle="--" if dashed else "-", shrinkA=1, shrinkB=1))
    if label:
        mx, my = (start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1]
        ax.text(mx, my, label, ha="center", va="bottom", fontsize=9, color="#222222")


def polyline_arrow(ax, points, dashed=False):
    """Right-angled arrow through several points (for routes around boxes)."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color="#333333", linewidth=1.3, linestyle="--" if dashed else "-")
    arrow(ax, points[-2], points[-1], dashed=dashed)


def section(ax, y, text):
    ax.text(2.1, y, text, ha="left", va="center", fontsize=12.5, fontweight="bold", color="#333333")


def draw_attention(ax):
    """(a) image and feature branches through the shared T into AFMA."""
    section(ax, 8.55, "(a) Across feature map attention: image patches vs feature-map patches, per class")
    x_in = box(ax, X[0], Y_IMG, "input image $x$\n(B, 3, H, W)", "label", w=1.7)
    c7 = box(ax, X[1], Y_IMG, "Conv 7×7\n3 → 64, pad 3", "image")
    c3 = box(ax, X[2], Y_IMG, "Conv 3×3\n64 → C, pad 1", "image")
    p_img = box(ax, X[3], Y_IMG, "patches  p×p\n(B, C, Li, P)", "image")
    enc = box(ax, X[0], Y_FEA, "SMP encoder\nfeatures[d]\n(B, ch_d, H/s, W/s)", "smp", w=1.7, h=1.0, size=10)
    c1 = box(ax, X[1], Y_FEA, "Conv 1×1\nch_d → C", "feature")
    div = box(ax, X[2], Y_FEA, "÷ $4^d$", "feature")
    p_fea = box(ax, X[3], Y_FEA, "patches  p×p\n(B, C, Lf, P)", "feature")
    t = box(ax, X[4], (Y_IMG + Y_FEA) / 2, "shared transform T\n(same weights for\nboth branches and\nall classes)\n\n"
            "Linear P → 2P\nLinear 2P → P\nReLU", "shared", h=Y_IMG - Y_FEA + H, size=10)
    afma = box(ax, X[5], (Y_IMG + Y_FEA) / 2,
               "AFMA = $A_{img}\\,A_{fea}^{\\top}$ / P\n(B, C, Li, Lf)\n≥ 0, no softmax", "afma", w=2.4, h=1.15)
    arrow(ax, x_in["b"], enc["t"])
    for a, b in ((x_in, c7), (c7, c3), (c3, p_img), (enc, c1), (c1, div), (div, p_fea)):
        arrow(ax, a["r"], b["l"])
    arrow(ax, p_img["r"], (t["l"][0], Y_IMG))
    arrow(ax, p_fea["r"], (t["l"][0], Y_FEA))
    arrow(ax, (t["r"][0], Y_IMG), (afma["l"][0], afma["l"][1] + 0.3), "$A_{img}$", label_offset=(0, 0.1))
    arrow(ax, (t["r"][0], Y_FEA), (afma["l"][0], afma["l"][1] - 0.3), "$A_{fea}$", label_offset=(0, -0.35))
    return enc, afma


def draw_output(ax, enc, afma):
    """(b) decoder logits sharpened by the attention: z' = z (1 + R)."""
    section(ax, 4.62, "(b) Output modification (no gradient through argmax)")
    dec = box(ax, X[0], Y_OUT, "SMP decoder\n+ head", "smp", w=1.7)
    z = box(ax, X[1], Y_OUT, "logits $z$\n(B, C, H, W)", "output")
    q = box(ax, X[2], Y_OUT, "one-hot(argmax$_c$ z)\nq", "output")
    pool = box(ax, X[3], Y_OUT, "avg pool q\nkernel s, stride s", "output")
    p_pool = box(ax, X[4], Y_OUT, "patches\n(B, C, Lf, P)", "output", w=1.9)
    r = box(ax, X[5], Y_OUT, "R = (AFMA / n) @ patches\nfold → (B, C, H, W)", "output", w=2.4)
    z2 = box(ax, X[6], Y_OUT, "$z' = z\\,(1 + R)$\nthen log-softmax", "output", w=1.7)
    arrow(ax, enc["b"], dec["t"], "features[0..5]", label_offset=(0.6, 0.22))
    for a, b in ((dec, z), (z, q), (q, pool), (pool, p_pool), (p_pool, r), (r, z2)):
        arrow(ax, a["r"], b["l"])
    arrow(ax, afma["b"], r["t"], "rows ÷ n (non-zero count)", label_offset=(0.95, -0.1))
    skip_y = Y_OUT - 0.7
    polyline_arrow(ax, [z["b"], (z["b"][0], skip_y), (X[6] - 0.5, skip_y), (X[6] - 0.5, z2["b"][1])])
    ax.text((X[1] + X[6]) / 2, skip_y + 0.04, "z (skip: $z' = z \\cdot R + z$)", ha="center", va="bottom",
            fontsize=9)
    return z2


def draw_loss(ax, afma, z2):
    """(c) gold AFMA from the label and the 5 NLL + 1 MSE loss."""
    section(ax, 2.55, "(c) Training loss")
    y = box(ax, X[0], Y_GOLD, "label\none-hot $y$", "label", w=1.7)
    gold = box(ax, 5.6, Y_GOLD, "gold AFMA = patches($y$) @ patches(avg pool$_s$ $y$)$^{\\top}$ / P\n"
               "(B, C, Li, Lf)", "afma", w=5.6)
    loss = box(ax, 12.95, Y_GOLD, "Loss = 5 · NLL($z'$, target, class weights)\n"
               "+ 1 · MSE(AFMA, gold AFMA)", "loss", w=3.9, h=0.9)
    arrow(ax, y["r"], gold["l"])
    arrow(ax, gold["r"], loss["l"])
    nll_x = X[6] + 0.3
    arrow(ax, (nll_x, z2["b"][1]), (nll_x, loss["t"][1]), "NLL", label_offset=(0.25, -0.1))
    route_x = 15.6
    polyline_arrow(ax, [afma["r"], (route_x, afma["r"][1]), (route_x, Y_GOLD), loss["r"]], dashed=True)
    ax.text(route_x - 0.08, 4.6, "MSE", rotation=90, ha="right", va="center", fontsize=9)


def draw_notation(ax):
    ax.text(0.12, 0.45, "B batch · C classes (last = unlabelled) · d attention depth · s stride of features[d] "
            "(H / feature height) · p patch size (10), P = p² · Li, Lf number of image / feature patches · "
            "n = non-zero entries per AFMA row + 1e-5", ha="left", va="center", fontsize=9.5, color="#444444")


def main():
    fig = plt.figure(figsize=(16, 9), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, 16), ylim=(0, 9))
    ax.axis("off")
    ax.text(8, 8.85, "AFMA: Across Feature Map Attention (Sang et al., TPAMI 2023)", ha="center", va="center",
            fontsize=15, fontweight="bold")
    enc, afma = draw_attention(ax)
    z2 = draw_output(ax, enc, afma)
    draw_loss(ax, afma, z2)
    draw_notation(ax)
    fig.savefig(OUT, dpi=100)
    plt.close(fig)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
