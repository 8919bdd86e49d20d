"""The released augmentations on OpenCV and NumPy: albumentations 1.0.0's parameter laws and kernels, one class each.

The authors trained with albumentations 1.0.0 (and imgaug 0.4 behind its `IAA*` names). Each class below names
the 1.0 transform it follows, draws its parameters by that transform's law (`params`, from the pipeline's own
`numpy.random.Generator`; per-pixel noise from a torch generator it seeds) and applies them with the same OpenCV
call (`image`, `mask`). The recorded outputs of 1.0 itself (tools/record_albumentations_1_0.py,
tests/data/albumentations_1_0.npz) are compared pixel for pixel in tests/data/test_augment.py, and the laws by
their moments.

Images are uint8 (H, W, 3), masks uint8 (H, W) class indices: masks are only ever moved (nearest-neighbour,
constant borders of `fill_mask`), never blended. Photometric transforms leave the mask alone.
"""
import cv2
import numpy as np
import torch

from utils.data.warps import perspective_maps, perspective_source, remap, warp_affine


class Transform:
    """One step: runs with probability `p`; `params(rng, image)` draws its parameters by the 1.0 law,
    `image(...)` and `mask(...)` apply them. `shown` names the settings the ledger cell of the step shows."""

    p = 1.0
    shown = ()

    def __call__(self, rng, image, mask, force=False):
        if not force and self.p < 1 and rng.random() >= self.p:
            return image, mask
        params = self.params(rng, image)
        return self.image(image, **params), self.mask(mask, **params)

    def params(self, rng, image):
        return {}

    def image(self, image, **params):
        return image

    def mask(self, mask, **params):
        return mask

    def describe(self):
        """`Name(setting value, ...)`: the step as docs/METHOD.md §5 writes it."""
        return f"{type(self).__name__}(" + ", ".join(f"{k} {show(getattr(self, k), k)}" for k in self.shown) + ")"


def show(v, name=""):
    """A setting as the ledger writes it: ranges low..high, sizes HxW, floats to 4 digits."""
    if name == "size":
        return "x".join(str(x) for x in v)
    if isinstance(v, (list, tuple)):
        return "..".join(show(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def resize(array, size, interpolation):
    """cv2.resize to (h, w), a no-op at the same size (as 1.0's `resize`)."""
    h, w = size
    return array if array.shape[:2] == (h, w) else cv2.resize(array, (w, h), interpolation=interpolation)


# Geometry: image and mask together.

class HorizontalFlip(Transform):
    """1.0 HorizontalFlip: cv2.flip around the vertical axis."""
    shown = ("p",)

    def __init__(self, p=0.5):
        self.p = p

    def image(self, image):
        return cv2.flip(image, 1)

    mask = image


class PadIfNeeded(Transform):
    """1.0 PadIfNeeded with a constant border: to at least (min_height, min_width), the odd pixel at the bottom
    and right (top = int((min - rows) / 2))."""
    shown = ("min_height", "min_width", "fill", "fill_mask")

    def __init__(self, min_height, min_width, fill, fill_mask):
        self.min_height, self.min_width, self.fill, self.fill_mask = min_height, min_width, fill, fill_mask

    def params(self, rng, image):
        rows, cols = image.shape[:2]
        top, left = int(max(0, self.min_height - rows) / 2.0), int(max(0, self.min_width - cols) / 2.0)
        return {"pads": (top, max(0, self.min_height - rows) - top, left, max(0, self.min_width - cols) - left)}

    def image(self, image, pads):  # a frame already large enough is not copied (Compose copies what it returns)
        return cv2.copyMakeBorder(image, *pads, cv2.BORDER_CONSTANT, value=(self.fill,) * 3) if any(pads) else image

    def mask(self, mask, pads):
        return cv2.copyMakeBorder(mask, *pads, cv2.BORDER_CONSTANT, value=self.fill_mask) if any(pads) else mask


def crop(array, size, starts):
    """1.0's random crop: the top-left corner at int((frame - crop) * start) for starts in [0, 1)."""
    (h, w), (h_start, w_start) = size, starts
    y, x = int((array.shape[0] - h) * h_start), int((array.shape[1] - w) * w_start)
    return array[y:y + h, x:x + w]


class RandomCrop(Transform):
    """1.0 RandomCrop: h_start, w_start uniform in [0, 1)."""
    shown = ("height", "width")

    def __init__(self, height, width):
        self.height, self.width = height, width

    def check(self, image):
        if image.shape[0] < self.height or image.shape[1] < self.width:
            raise ValueError(f"{type(self).__name__} of {self.height}x{self.width} needs a frame at least that "
                             f"large, not {image.shape[0]}x{image.shape[1]} (pad it first)")

    def params(self, rng, image):
        self.check(image)
        return {"starts": (rng.random(), rng.random())}

    def image(self, image, starts):
        return crop(image, (self.height, self.width), starts)

    mask = image


class CenterCrop(RandomCrop):
    """1.0 CenterCrop: the top-left corner at (frame - crop) // 2."""

    def params(self, rng, image):
        self.check(image)
        return {}

    def image(self, image):
        y, x = (image.shape[0] - self.height) // 2, (image.shape[1] - self.width) // 2
        return image[y:y + self.height, x:x + self.width]

    mask = image


class RandomSizedCrop(Transform):
    """1.0 RandomSizedCrop: crop height uniform integer in min_max_height, width int(height * w2h_ratio) (here at
    most the frame's), corner as RandomCrop; resized to `size`, image linear, mask nearest."""
    shown = ("min_max_height", "size", "w2h_ratio")

    def __init__(self, min_max_height, size, w2h_ratio):
        self.min_max_height, self.size, self.w2h_ratio = tuple(min_max_height), tuple(size), w2h_ratio

    def params(self, rng, image):
        height = int(rng.integers(self.min_max_height[0], self.min_max_height[1] + 1))
        starts = (rng.random(), rng.random())
        # 1.0 refused a crop wider than the frame; only a frame narrower than 4/3 of its height reaches this.
        return {"crop_size": (height, min(int(height * self.w2h_ratio), image.shape[1])), "starts": starts}

    def image(self, image, crop_size, starts):
        return resize(crop(image, crop_size, starts), self.size, cv2.INTER_LINEAR)

    def mask(self, mask, crop_size, starts):
        return resize(crop(mask, crop_size, starts), self.size, cv2.INTER_NEAREST)


class ShiftScaleRotate(Transform):
    """1.0 ShiftScaleRotate: angle, scale, dx, dy each uniform in its range; cv2.getRotationMatrix2D about the
    frame's centre (w/2, h/2), plus (dx w, dy h); OpenCV 4's warpAffine (utils/data/warps.py), image linear,
    mask nearest, constant borders."""
    shown = ("shift_limit", "scale_limit", "rotate_limit", "fill", "fill_mask", "p")

    def __init__(self, shift_limit, scale_limit, rotate_limit, fill, fill_mask, p=1.0):
        self.shift_limit, self.scale_limit, self.rotate_limit = shift_limit, scale_limit, rotate_limit
        self.fill, self.fill_mask, self.p = fill, fill_mask, p

    def params(self, rng, image):
        angle = rng.uniform(-self.rotate_limit, self.rotate_limit)
        scale = rng.uniform(1 - self.scale_limit, 1 + self.scale_limit)
        dx, dy = rng.uniform(-self.shift_limit, self.shift_limit, 2)
        return {"matrix": self.matrix(image.shape[:2], angle, scale, dx, dy)}

    @staticmethod
    def matrix(shape, angle, scale, dx, dy):
        """1.0's shift_scale_rotate matrix of an (h, w) frame."""
        h, w = shape
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[0, 2] += dx * w
        matrix[1, 2] += dy * h
        return matrix

    def image(self, image, matrix, rows=None, cols=None):
        return warp_affine(image, matrix, cv2.INTER_LINEAR, self.fill, rows, cols)

    def mask(self, mask, matrix, rows=None, cols=None):
        return warp_affine(mask, matrix, cv2.INTER_NEAREST, self.fill_mask, rows, cols)


def warp_pad_crop(rng, image, mask, warp, pad, random_crop):
    """ShiftScaleRotate, PadIfNeeded, RandomCrop in a row (birds, skin lesions, LiTS): the same draws and the
    same pixels as the three one after the other, but only the warped pixels the crop keeps are computed (each
    warped pixel depends on its own position alone, utils/data/warps.py), and the pad is that of the window.
    None where the warp does not run (its p), which leaves the three steps to run as they are."""
    if warp.p < 1 and rng.random() >= warp.p:
        return None
    params = warp.params(rng, image)
    (h, w), (ch, cw) = image.shape[:2], (random_crop.height, random_crop.width)
    top, bottom, left, right = pad.params(rng, image)["pads"]  # the warp keeps the frame's size
    padded = np.broadcast_to(np.uint8(0), (h + top + bottom, w + left + right))  # a shape, no pixels
    starts = random_crop.params(rng, padded)["starts"]
    y, x = int((padded.shape[0] - ch) * starts[0]) - top, int((padded.shape[1] - cw) * starts[1]) - left
    rows, cols = range(max(0, y), min(h, y + ch)), range(max(0, x), min(w, x + cw))  # the window in the frame
    if not rows or not cols:  # the crop holds no warped pixel: the three steps as they are
        image, mask = warp.image(image, **params), warp.mask(mask, **params)
        pads = {"pads": (top, bottom, left, right)}
        image, mask = pad.image(image, **pads), pad.mask(mask, **pads)
        return random_crop.image(image, starts), random_crop.mask(mask, starts)
    image, mask = warp.image(image, **params, rows=rows, cols=cols), warp.mask(mask, **params, rows=rows, cols=cols)
    window = (rows.start - y, y + ch - rows.stop, cols.start - x, x + cw - cols.stop)
    if any(window):
        image, mask = pad.image(image, window), pad.mask(mask, window)
    return image, mask


def order_points(points):
    """1.0 Perspective._order_points: (tl, tr, br, bl) from the two leftmost and two rightmost points."""
    pts = np.array(sorted(points, key=lambda x: x[0]))
    (tl, bl), (tr, br) = (p if p[0][1] < p[1][1] else p[::-1] for p in (pts[:2], pts[2:]))
    return np.array([tl, tr, br, bl], dtype=np.float32)


def side(points, a, b, c, d):
    """max and min (as int) of the lengths |a b| and |c d| of the quadrilateral's opposite sides."""
    lengths = (np.sqrt(((points[a] - points[b]) ** 2).sum()), np.sqrt(((points[c] - points[d]) ** 2).sum()))
    return int(max(lengths)), int(min(lengths))


class Perspective(Transform):
    """1.0 Perspective (and IAAPerspective, its subclass in 1.0): sigma uniform in `scale`; each corner moves
    inwards by |N(0, sigma)| mod 1 of the frame; the quadrilateral is warped onto a (max_height, max_width)
    rectangle (OpenCV 4's warpPerspective, utils/data/warps.py, constant border) and resized back to the frame
    (keep_size), image linear, mask nearest. 1.0 gave masks the image's border value (0); here `fill_mask`."""
    shown = ("scale", "fill_mask", "p")

    def __init__(self, p, fill_mask, scale=(0.05, 0.1)):
        self.p, self.fill_mask, self.scale = p, fill_mask, tuple(scale)

    def params(self, rng, image):
        return self.warp(image.shape[:2], rng.normal(0, rng.uniform(*self.scale), (4, 2)))

    @staticmethod
    def warp(shape, normals):
        """The matrix and output size of 1.0's warp from its four corners' (4, 2) N(0, sigma) draws."""
        (h, w), points = shape, np.mod(np.abs(normals), 1)
        points[1, 0] = 1.0 - points[1, 0]
        points[2] = 1.0 - points[2]
        points[3, 1] = 1.0 - points[3, 1]
        return rectangle(order_points(points * (w, h)))

    def image(self, image, source):
        warped = remap(image, perspective_maps(source, cv2.INTER_LINEAR), cv2.INTER_LINEAR, 0)
        return resize(warped, image.shape[:2], cv2.INTER_LINEAR)

    def mask(self, mask, source):
        warped = remap(mask, perspective_maps(source, cv2.INTER_NEAREST), cv2.INTER_NEAREST, self.fill_mask)
        return resize(warped, mask.shape[:2], cv2.INTER_NEAREST)


def rectangle(points):
    """1.0's target rectangle of ordered corners (tl, tr, br, bl): widest and tallest sides, each widened to at
    least 2 pixels, and the cv2.getPerspectiveTransform onto it, as the source of each output pixel. `points` is
    moved in place, as in 1.0."""
    tl, tr, br, bl = range(4)
    max_width, min_width = side(points, tr, tl, br, bl)
    while min_width < 2:
        points[[tl, bl], 0] -= (2 - min_width) / 2
        points[[tr, br], 0] += (2 - min_width) / 2
        max_width, min_width = side(points, tr, tl, br, bl)
    max_height, min_height = side(points, tr, br, tl, bl)
    while min_height < 2:
        points[[tl, tr], 1] -= (2 - min_height) / 2
        points[[bl, br], 1] += (2 - min_height) / 2
        max_height, min_height = side(points, tr, br, tl, bl)
    dst = np.array([[0, 0], [max_width, 0], [max_width, max_height], [0, max_height]], dtype=np.float32)
    return {"source": perspective_source(cv2.getPerspectiveTransform(points, dst), (max_height, max_width))}


# Photometric: the image alone.

def standard_normal(rng, shape) -> np.ndarray:
    """N(0, 1) float32 per pixel, from torch's generator seeded by the sample's `rng`: the same law as NumPy's
    draws, in half the time for a frame's millions of them (the p 0.1 noise was a third of a noisy sample's cost)."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    return torch.empty(shape, dtype=torch.float32).normal_(generator=generator).numpy()


class GaussNoise(Transform):
    """1.0 GaussNoise: the VARIANCE uniform in var_limit; N(0, sqrt(var)) per pixel and channel (per_channel) or
    one per pixel for all channels; added in float, clipped to 0..255 and truncated to uint8."""
    shown = ("var_limit", "per_channel", "p")

    def __init__(self, var_limit=(10.0, 50.0), per_channel=True, p=0.5):
        self.var_limit, self.per_channel, self.p = tuple(var_limit), per_channel, p

    def params(self, rng, image):
        sigma = rng.uniform(*self.var_limit) ** 0.5
        shape = image.shape if self.per_channel else (*image.shape[:2], 1)
        gauss = standard_normal(rng, shape)
        return {"gauss": np.multiply(gauss, np.float32(sigma), out=gauss)}  # scaled in its own buffer

    def image(self, image, gauss):
        noisy = np.add(image, gauss, dtype=np.result_type(np.float32, gauss.dtype))
        return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


class AdditiveGaussianNoise(Transform):
    """imgaug 0.4 AdditiveGaussianNoise (1.0's IAAAdditiveGaussianNoise): the STANDARD DEVIATION uniform in
    `scale`; one N(0, std) per pixel for all channels, rounded half to even, added in int16 and clipped."""
    shown = ("scale", "p")

    def __init__(self, scale=(0.01 * 255, 0.05 * 255), p=0.5):
        self.scale, self.p = tuple(scale), p

    def params(self, rng, image):
        std = rng.uniform(*self.scale)
        noise = standard_normal(rng, (*image.shape[:2], 1))
        return {"noise": np.multiply(noise, np.float32(std), out=noise)}

    def image(self, image, noise):
        rounded = np.round(noise)
        noise = np.clip(rounded, -255, 255, out=rounded).astype(np.int16)
        noisy = np.add(image, noise, dtype=np.int16)
        return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


class CLAHE(Transform):
    """1.0 CLAHE: clip limit uniform in clip_limit; OpenCV's CLAHE (8x8 tiles) on L of RGB -> LAB."""
    shown = ("clip_limit",)

    def __init__(self, clip_limit=(1.0, 4.0)):
        self.clip_limit = tuple(clip_limit)

    def params(self, rng, image):
        return {"clip_limit": rng.uniform(*self.clip_limit)}

    def image(self, image, clip_limit):
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(8, 8)).apply(lab[:, :, 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


class BrightnessContrast(Transform):
    """1.0 RandomBrightnessContrast (RandomBrightness: contrast 0; RandomContrast: brightness 0): alpha =
    1 + U(contrast), beta = U(brightness); the lookup table clip(v alpha + 255 beta) truncated to uint8."""
    shown = ("brightness_limit", "contrast_limit")

    def __init__(self, brightness_limit=0.2, contrast_limit=0.2):
        self.brightness_limit, self.contrast_limit = brightness_limit, contrast_limit

    def params(self, rng, image):
        alpha = 1.0 + rng.uniform(-self.contrast_limit, self.contrast_limit)
        return {"alpha": alpha, "beta": rng.uniform(-self.brightness_limit, self.brightness_limit)}

    def image(self, image, alpha, beta):
        lut = np.arange(256, dtype=np.float32)
        if alpha != 1:
            lut *= alpha
        if beta != 0:
            lut += beta * 255
        return cv2.LUT(image, np.clip(lut, 0, 255).astype(np.uint8))


class RandomGamma(Transform):
    """1.0 RandomGamma: gamma = uniform integer in gamma_limit / 100; the table (v/255)^gamma 255, truncated."""
    shown = ("gamma_limit",)

    def __init__(self, gamma_limit=(80, 120)):
        self.gamma_limit = tuple(gamma_limit)

    def params(self, rng, image):
        return {"gamma": int(rng.integers(self.gamma_limit[0], self.gamma_limit[1] + 1)) / 100.0}

    def image(self, image, gamma):
        table = (np.arange(0, 256.0 / 255, 1.0 / 255) ** gamma) * 255
        return cv2.LUT(image, table.astype(np.uint8))


class HueSaturationValue(Transform):
    """1.0 HueSaturationValue: three shifts uniform in their limits; RGB -> HSV (OpenCV's 0..179 hue), lookup
    tables (hue + shift mod 180, saturation and value clipped), truncated to uint8, back to RGB."""
    shown = ("hue_shift_limit", "sat_shift_limit", "val_shift_limit")

    def __init__(self, hue_shift_limit=20, sat_shift_limit=30, val_shift_limit=20):
        self.hue_shift_limit, self.sat_shift_limit, self.val_shift_limit = (
            hue_shift_limit, sat_shift_limit, val_shift_limit)

    def params(self, rng, image):
        limits = (self.hue_shift_limit, self.sat_shift_limit, self.val_shift_limit)
        return {"shifts": tuple(rng.uniform(-v, v) for v in limits)}

    def image(self, image, shifts):
        hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
        base = np.arange(256, dtype=np.int16)
        if shifts[0] != 0:
            hue = cv2.LUT(hue, np.mod(base + shifts[0], 180).astype(np.uint8))
        if shifts[1] != 0:
            sat = cv2.LUT(sat, np.clip(base + shifts[1], 0, 255).astype(np.uint8))
        if shifts[2] != 0:
            val = cv2.LUT(val, np.clip(base + shifts[2], 0, 255).astype(np.uint8))
        return cv2.cvtColor(cv2.merge((hue, sat, val)), cv2.COLOR_HSV2RGB)


class Sharpen(Transform):
    """1.0 Sharpen (and imgaug's Sharpen behind IAASharpen): alpha, lightness uniform; the 3x3 kernel
    (1 - alpha) identity + alpha [[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]]; cv2.filter2D."""
    shown = ("alpha", "lightness")

    def __init__(self, alpha=(0.2, 0.5), lightness=(0.5, 1.0)):
        self.alpha, self.lightness = tuple(alpha), tuple(lightness)

    def params(self, rng, image):
        return {"kernel": self.kernel(rng.uniform(*self.alpha), rng.uniform(*self.lightness))}

    @staticmethod
    def kernel(alpha, lightness):
        effect = np.array([[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]], dtype=np.float32)
        identity = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
        return (1 - alpha) * identity + alpha * effect

    def image(self, image, kernel):
        return cv2.filter2D(image, -1, kernel)


class Blur(Transform):
    """1.0 Blur(blur_limit 3): the 3x3 box filter (cv2.blur); 1.0 draws an odd size in 3..blur_limit."""
    shown = ("blur_limit",)

    def __init__(self, blur_limit=3):
        self.blur_limit = blur_limit

    def params(self, rng, image):
        return {"ksize": int(rng.choice(np.arange(3, self.blur_limit + 1, 2)))}

    def image(self, image, ksize):
        return cv2.blur(image, (ksize, ksize))


class MotionBlur(Blur):
    """1.0 MotionBlur: a 1-pixel line (cv2.line) between two random cells of a ksize x ksize kernel: xs, xe
    uniform; ys, ye uniform too, or two distinct rows when xs == xe; normalised, cv2.filter2D."""

    def params(self, rng, image):
        k = int(rng.choice(np.arange(3, self.blur_limit + 1, 2)))
        xs, xe = rng.integers(0, k, 2)
        ys, ye = rng.choice(k, 2, replace=False) if xs == xe else rng.integers(0, k, 2)
        return {"kernel": self.kernel(k, xs, ys, xe, ye)}

    @staticmethod
    def kernel(k, xs, ys, xe, ye):
        """The normalised k x k kernel of the line from (xs, ys) to (xe, ye)."""
        kernel = cv2.line(np.zeros((k, k), np.uint8), (int(xs), int(ys)), (int(xe), int(ye)), 1, thickness=1)
        return kernel.astype(np.float32) / kernel.sum()

    def image(self, image, kernel):
        return cv2.filter2D(image, -1, kernel)


class OneOf(Transform):
    """1.0 OneOf: with probability p, one member chosen uniformly (all members here have p 1) runs."""

    def __init__(self, transforms, p):
        self.transforms, self.p = list(transforms), p

    def __call__(self, rng, image, mask, force=False):
        if not force and rng.random() >= self.p:
            return image, mask
        return self.transforms[int(rng.integers(len(self.transforms)))](rng, image, mask, force=True)

    def describe(self):
        return f"OneOf(p {show(self.p)}: " + " / ".join(t.describe() for t in self.transforms) + ")"


# The project's own resizes (not in the released pipelines): --scale and SkinLesion.pre_resize.

class Resize(Transform):
    """To (height, width): image area-averaged when shrinking (linear when growing), mask nearest."""
    shown = ("height", "width")

    def __init__(self, height, width):
        self.height, self.width = height, width

    def params(self, rng, image):
        return {"size": (self.height, self.width)}

    def image(self, image, size):
        shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
        return resize(image, size, cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def mask(self, mask, size):
        return resize(mask, size, cv2.INTER_NEAREST)


class Rescale(Resize):
    """Resize by a factor: (int(h factor), int(w factor))."""
    shown = ("factor",)

    def __init__(self, factor):
        self.factor = factor

    def params(self, rng, image):
        return {"size": (int(image.shape[0] * self.factor), int(image.shape[1] * self.factor))}


class Compose:
    """A pipeline: `pipeline(image=..., mask=...)` -> {"image": uint8 (3, H, W) tensor, "mask": uint8 (H, W)}
    (the mask may be left out).

    Its parameters come from one numpy Generator (which also seeds the noise's); `set_random_seed(seed)` restarts
    it, so a sample's augmentation is a function of its seed alone (utils/data/datasets.py).
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)
        self.rng = np.random.default_rng()

    def set_random_seed(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, mask=None):
        if mask is None:  # an image alone (--predict): a blank mask rides along
            mask = np.zeros(image.shape[:2], np.uint8)
        transforms, i, given = self.transforms, 0, (image, mask)
        while i < len(transforms):
            if (type(transforms[i]) is ShiftScaleRotate and i + 2 < len(transforms)
                    and type(transforms[i + 1]) is PadIfNeeded and type(transforms[i + 2]) is RandomCrop):
                done = warp_pad_crop(self.rng, image, mask, *transforms[i:i + 3])
                if done is not None:
                    image, mask = done
                    i += 3
                    continue
                i += 1  # the warp did not run: pad and crop as they are
                continue
            image, mask = transforms[i](self.rng, image, mask)
            i += 1
        # Steps that leave a frame as it is return it (a pad to a size it has), and crops are views: what is
        # returned never shares the caller's arrays.
        image, mask = (a.copy() if np.may_share_memory(a, b) else a for a, b in zip((image, mask), given))
        if image.ndim == 2:  # OpenCV drops a single channel's axis (grey images, --predict's one-channel stand-in)
            image = image[..., None]
        return {"image": torch.from_numpy(image.transpose(2, 0, 1)), "mask": torch.from_numpy(mask)}
