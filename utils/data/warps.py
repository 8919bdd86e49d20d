"""The warps of OpenCV 4.x, which albumentations 1.0 called, on OpenCV 5 (utils/data/augment.py uses them).

OpenCV 5 rewrote cv2.warpAffine and cv2.warpPerspective, whose bilinear results now differ from 4.x's by up to 3
levels. 4.x computed each output pixel's source position in fixed point (1/32 pixel, INTER_BITS 5) and handed the
positions to cv2.remap, whose fixed-point path OpenCV 5 keeps: the same positions, computed here as 4.x did, give
4.x's pixels (tests/data/test_augment.py compares them with 1.0's recorded outputs).
"""
import cv2
import numpy as np

TAB = 32  # INTER_TAB_SIZE: 1/32-pixel positions


def remap(array, maps, interpolation, fill):
    """cv2.remap with 4.x's fixed-point maps, constant border `fill`."""
    fill = fill if array.ndim == 2 else (fill,) * array.shape[2]
    return cv2.remap(array, *maps, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def positions(fx, fy, interpolation):
    """Integer source positions (in 1/32 pixel for bilinear) -> cv2.remap's (int16 xy, uint16 table index).
    `fx` and `fy` may be a row and a column (broadcast here) and may be overwritten."""
    shape = np.broadcast_shapes(fx.shape, fy.shape)
    xy = np.empty((*shape, 2), np.int16)
    table = None if interpolation == cv2.INTER_NEAREST else np.empty(shape, np.uint16)
    fill_positions(fx, fy, interpolation, xy, table)
    return xy, table


def fill_positions(fx, fy, interpolation, xy, table):
    """`positions` into given xy and table arrays (fx and fy overwritten)."""
    if interpolation != cv2.INTER_NEAREST:
        np.bitwise_or(low_bits(fy) << 5, low_bits(fx), out=table)  # (fy % 32) 32 + fx % 32, broadcast
        fx, fy = np.right_shift(fx, 5, out=fx), np.right_shift(fy, 5, out=fy)
    xy[..., 0], xy[..., 1] = short(fx), short(fy)


def low_bits(v):
    """v % 32 (v & 31) as uint16: the cast to uint16 keeps the low bits, and the rest runs on half the bytes."""
    v = v.astype(np.uint16)
    return np.bitwise_and(v, TAB - 1, out=v)


def short(v):
    """4.x's saturate_cast<short> (where int16 would wrap), in place."""
    return clip(v, -2 ** 15, 2 ** 15 - 1)


def clip(v, low, high):
    """np.clip(v, low, high, out=v) as its two ufuncs (NaN stays NaN in both), without np.clip's Python-level
    checks, which cost more than the work on a strip."""
    return np.minimum(np.maximum(v, low, out=v), high, out=v)


def affine_positions(matrix, rows, cols, interpolation):
    """4.x's warpAffine positions (before `positions`) of the output pixels rows x cols (two ranges): the inverse
    matrix scaled by 1024 (AB_BITS 10) and rounded per column and per row, plus half a step, shifted down to
    1/32 pixel (or whole pixels for nearest). Each pixel's position depends on its own row and column alone, so
    any window of the output gets the numbers the whole frame would have there.

    Without rotation (the released pipelines') x depends on the column alone and y on the row: a (1, w) and an
    (h, 1) array, broadcast where they are used, the same numbers at a fraction of the work."""
    m = cv2.invertAffineTransform(matrix)
    shift = 10 if interpolation == cv2.INTER_NEAREST else 5
    x, y, half = np.arange(cols.start, cols.stop), np.arange(rows.start, rows.stop), 1 << (shift - 1)
    column = lambda a: np.rint(a * x * 1024).astype(np.int32)[None]
    row = lambda b, c: (np.rint((b * y + c) * 1024).astype(np.int32) + half)[:, None]
    fx = column(m[0, 0]) + (row(m[0, 1], m[0, 2])[:1] if m[0, 1] == 0 else row(m[0, 1], m[0, 2]))
    fy = (column(m[1, 0])[:, :1] if m[1, 0] == 0 else column(m[1, 0])) + row(m[1, 1], m[1, 2])
    return fx >> shift, fy >> shift


def affine_maps(matrix, size, interpolation, rows=None, cols=None):
    """cv2.remap's maps of 4.x's warpAffine to an (h, w) output, or of its window rows x cols (ranges)."""
    rows, cols = range(size[0]) if rows is None else rows, range(size[1]) if cols is None else cols
    return positions(*affine_positions(matrix, rows, cols, interpolation), interpolation)


def warp_affine(array, matrix, interpolation, fill, rows=None, cols=None):
    """4.x's cv2.warpAffine of `array` onto its own size, constant border `fill`; or the window rows x cols
    (ranges) of that output alone, the same pixels.

    Nearest without rotation indexes rows and columns directly: the pixel at (y, x) is array[fy[y], fx[x]]
    where both are inside the frame, `fill` elsewhere, as cv2.remap's nearest with a constant border."""
    rows = range(array.shape[0]) if rows is None else rows
    cols = range(array.shape[1]) if cols is None else cols
    fx, fy = affine_positions(matrix, rows, cols, interpolation)
    if interpolation != cv2.INTER_NEAREST or fx.shape[0] != 1 or fy.shape[1] != 1:
        return remap(array, positions(fx, fy, interpolation), interpolation, fill)
    # positions' int16 saturation, then remap's test of each position against the frame
    fx, fy = (np.clip(v.ravel(), -2 ** 15, 2 ** 15 - 1) for v in (fx, fy))
    inside_x, inside_y = (fx >= 0) & (fx < array.shape[1]), (fy >= 0) & (fy < array.shape[0])
    out = array.take(np.where(inside_y, fy, 0), axis=0).take(np.where(inside_x, fx, 0), axis=1)
    if not inside_x.all():
        out[:, ~inside_x] = fill
    if not inside_y.all():
        out[~inside_y] = fill
    return out


STRIP = 1 << 18  # elements per strip of the perspective maps: temporaries of 2 MB at most, whatever the frame


def strips(h, w):
    """Row ranges of an (h, w) frame, about STRIP elements each."""
    step = max(1, STRIP // max(w, 1))
    return [slice(r, min(h, r + step)) for r in range(0, h, step)]


def perspective_source(matrix, size):
    """The source (x, y) of each pixel of an (h, w) output under 4.x's warpPerspective: the inverse homography's
    x / w and y / w in float64 (0 where w is 0). 4.x scaled them by 32 for bilinear before rounding; scaling by a
    power of two is exact, so one computation serves the image and the mask.

    Computed a strip of rows at a time into the two outputs, each step on the strip in place: every number is
    the same expression of its row and column as over the whole frame, (b y + c) + a x and 1 / ((e y + f) + d x)."""
    m = cv2.invert(matrix)[1]
    (h, w), x = size, np.arange(size[1], dtype=np.float64)[None]
    source = np.empty((2, h, w))
    terms = [(m[k, 0] * x, m[k, 1], m[k, 2]) for k in range(3)]  # a x once, per row b y + c
    inv = np.empty((min(h, max(1, STRIP // max(w, 1))), w))
    for rows in strips(h, w):
        y = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None]
        den = inv[:rows.stop - rows.start]
        ax, b, c = terms[2]
        np.add(b * y + c, ax, out=den)
        zero = den == 0
        with np.errstate(divide="ignore"):
            np.divide(1, den, out=den)
        if zero.any():
            den[zero] = 0
        for k in range(2):
            ax, b, c = terms[k]
            out = source[k, rows]
            np.add(b * y + c, ax, out=out)
            np.multiply(out, den, out=out)
    return source[0], source[1]


def perspective_maps(source, interpolation):
    """cv2.remap's maps from `perspective_source`: rounded to 1/32 pixel for bilinear, to pixels for nearest;
    a strip of rows at a time (rint(clip(v scale)) to int32, then `positions`' steps), into the two maps."""
    nearest = interpolation == cv2.INTER_NEAREST
    scale, (h, w) = (1 if nearest else TAB), source[0].shape
    xy, table = np.empty((h, w, 2), np.int16), None if nearest else np.empty((h, w), np.uint16)
    n = min(h, max(1, STRIP // max(w, 1)))
    real, ints = np.empty((n, w)), np.empty((2, n, w), np.int32)
    for rows in strips(h, w):
        k = rows.stop - rows.start
        for v, i in zip(source, ints[:, :k]):
            np.multiply(v[rows], scale, out=real[:k])
            clip(real[:k], -2 ** 31, 2 ** 31 - 1)
            np.rint(real[:k], out=real[:k])
            np.copyto(i, real[:k], casting="unsafe")  # astype(np.int32)
        fill_positions(ints[0, :k], ints[1, :k], interpolation, xy[rows], None if nearest else table[rows])
    return xy, table
