"""Record what albumentations 1.0.0 (and imgaug 0.4.0 behind its IAA* names) computes, for the suite to compare
utils/data/augment.py against (tests/data/test_augment.py).

Run once, in an environment of its own (albumentations 1.0.0 is not a project dependency), from the repository
root; the recorded fixture was made with exactly these releases (Python 3.11):

    python -m venv /tmp/venv-alb10
    /tmp/venv-alb10/bin/pip install albumentations==1.0.0 numpy==1.26.4 opencv-python-headless==4.11.0.86 \
        scipy==1.17.1 scikit-image==0.26.0 shapely==2.2.0 six==1.17.0 imageio==2.38.2
    /tmp/venv-alb10/bin/pip install imgaug==0.4.0 --no-deps   # its opencv-python and matplotlib are not needed
    /tmp/venv-alb10/bin/python tools/record_albumentations_1_0.py

It writes tests/data/albumentations_1_0.npz: per case `<case>/in_image`, `<case>/in_mask`, the fixed
parameters `<case>/<name>` (as the project's transform takes them) and 1.0's `<case>/out_image`,
`<case>/out_mask`; and per law `law/<transform>/<parameter>`: 1.0's own draws of that parameter (2000 each, seeded),
whose moments the suite compares with the project's draws.
"""
import random
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

warnings.simplefilter("ignore")  # the IAA* deprecation warnings

import albumentations as A  # noqa: E402
import imgaug  # noqa: E402
import imgaug.augmenters as iaa  # noqa: E402
from imgaug.augmenters import arithmetic  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "albumentations_1_0.npz"
DRAWS = 2000


def inputs(seed, h=24, w=32):
    """A small RGB image (noise over a gradient, so that every operation has edges and flat parts) and a
    blocky mask of classes 0..3."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 40, h)[:, None, None]
    image = np.clip(ramp + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.kron(rng.integers(0, 4, (h // 4, w // 4)), np.ones((4, 4), int)).astype(np.uint8)
    return image, mask


def record(out, case, seed, run, **params):
    """Store one case: inputs, `params` and `run(image, mask)`'s outputs (mask None for image-only ones)."""
    image, mask = inputs(seed)
    out_image, out_mask = run(image, mask)
    out[f"{case}/in_image"], out[f"{case}/in_mask"], out[f"{case}/out_image"] = image, mask, out_image
    if out_mask is not None:
        out[f"{case}/out_mask"] = out_mask
    for name, value in params.items():
        out[f"{case}/{name}"] = np.asarray(value)


def dual(t, **params):
    """A 1.0 dual transform's apply / apply_to_mask with fixed parameters (interpolation linear for images)."""
    return lambda image, mask: (t.apply(image, interpolation=cv2.INTER_LINEAR, **params),
                                t.apply_to_mask(mask, interpolation=cv2.INTER_LINEAR, **params))


def cases(out):
    record(out, "HorizontalFlip", 1, lambda i, m: (A.HorizontalFlip(p=1)(image=i, mask=m).values()))
    for k, (fill, fill_mask) in enumerate([((255, 255, 255), 255), (0, 0)]):
        pad = A.PadIfNeeded(31, 45, border_mode=cv2.BORDER_CONSTANT, value=fill, mask_value=fill_mask)
        record(out, f"PadIfNeeded{k}", 2 + k, lambda i, m: pad(image=i, mask=m).values(),
               size=(31, 45), fill=np.max(fill), fill_mask=fill_mask)
    record(out, "RandomCrop", 4, dual(A.RandomCrop(16, 20), h_start=0.37, w_start=0.91), size=(16, 20),
           starts=(0.37, 0.91))
    record(out, "CenterCrop", 5, lambda i, m: A.CenterCrop(15, 21)(image=i, mask=m).values(), size=(15, 21))
    sized = A.RandomSizedCrop([10, 24], 16, 20, w2h_ratio=4 / 3, interpolation=cv2.INTER_LINEAR)
    record(out, "RandomSizedCrop", 6, dual(sized, crop_height=17, crop_width=int(17 * 4 / 3), h_start=0.6,
                                            w_start=0.2), crop_size=(17, int(17 * 4 / 3)), starts=(0.6, 0.2),
           size=(16, 20))
    ssr = A.ShiftScaleRotate(shift_limit=0.1, scale_limit=0.5, rotate_limit=0, border_mode=0)
    for k, scale in enumerate([0.63, 1.41]):
        record(out, f"ShiftScaleRotate{k}", 7 + k, dual(ssr, angle=0.0, scale=scale, dx=0.07, dy=-0.09),
               angle=0.0, scale=scale, dx=0.07, dy=-0.09)
    for k, seed in enumerate([3, 11, 12]):
        image, _ = inputs(9 + k)
        persp = A.Perspective()
        np.random.seed(seed)
        params = persp.get_params_dependent_on_targets({"image": image})
        np.random.seed(seed)
        normals = np.random.normal(0, np.random.uniform(*persp.scale), [4, 2])
        record(out, f"Perspective{k}", 9 + k, dual(persp, **{k: v for k, v in params.items() if k != "interpolation"}),
               normals=normals)
    for k, per_channel in enumerate([True, False]):
        image, _ = inputs(12 + k)
        noise = A.GaussNoise(per_channel=per_channel)
        random.seed(k)
        gauss = noise.get_params_dependent_on_targets({"image": image})["gauss"]
        record(out, f"GaussNoise{k}", 12 + k, lambda i, m: (noise.apply(i, gauss=gauss), None), gauss=gauss)
    captured = {}
    original = arithmetic.add_elementwise

    def capture(image, values):
        captured["noise"] = values
        return original(image, values)

    arithmetic.add_elementwise = capture
    iaa_noise = A.IAAAdditiveGaussianNoise(p=1)
    imgaug.seed(5)
    record(out, "AdditiveGaussianNoise", 14, lambda i, m: (iaa_noise(image=i)["image"], None))
    out["AdditiveGaussianNoise/noise"] = captured["noise"]
    record(out, "CLAHE", 15, lambda i, m: (A.CLAHE().apply(i, clip_limit=2.7), None), clip_limit=2.7)
    for k, (alpha, beta) in enumerate([(1.0, 0.13), (0.83, 0.0), (1.17, -0.11)]):
        record(out, f"BrightnessContrast{k}", 16 + k,
               lambda i, m: (A.RandomBrightnessContrast().apply(i, alpha=alpha, beta=beta), None),
               alpha=alpha, beta=beta)
    for k, gamma in enumerate([0.8, 1.13]):
        record(out, f"RandomGamma{k}", 19 + k, lambda i, m: (A.RandomGamma().apply(i, gamma=gamma), None),
               gamma=gamma)
    shifts = (-13.7, 21.3, -8.4)
    record(out, "HueSaturationValue", 21, lambda i, m: (A.HueSaturationValue().apply(i, *shifts), None),
           shifts=shifts)
    matrix = A.Sharpen._Sharpen__generate_sharpening_matrix(alpha_sample=0.33, lightness_sample=0.71)
    record(out, "Sharpen", 22, lambda i, m: (A.Sharpen().apply(i, sharpening_matrix=matrix), None),
           alpha=0.33, lightness=0.71)
    record(out, "IAASharpen", 23, lambda i, m: (iaa.Sharpen(alpha=0.41, lightness=0.62).augment_image(i), None),
           alpha=0.41, lightness=0.62)
    record(out, "Blur", 24, lambda i, m: (A.Blur(3).apply(i, ksize=3), None), ksize=3)
    for k, line in enumerate([(0, 2, 2, 1), (1, 0, 1, 2), (2, 2, 0, 0)]):
        kernel = np.zeros((3, 3), np.uint8)
        cv2.line(kernel, line[:2], line[2:], 1, thickness=1)
        kernel = kernel.astype(np.float32) / kernel.sum()
        record(out, f"MotionBlur{k}", 25 + k, lambda i, m: (A.MotionBlur(3).apply(i, kernel=kernel), None),
               line=line)
    out["IAAPerspective/p"] = np.asarray([A.IAAPerspective(p=p).p for p in (0.1, 0.5, 1.0)])
    out["IAAPerspective/is_perspective"] = np.asarray(isinstance(A.IAAPerspective(), A.Perspective))


def laws(out):
    """1.0's own draws: DRAWS seeded calls of each transform's get_params (python `random` and numpy's global
    generator, which 1.0 draws from)."""
    random.seed(0)
    np.random.seed(0)
    image, _ = inputs(0, 100, 120)
    draws = {}

    def add(name, value):
        draws.setdefault(name, []).append(value)

    ssr = A.ShiftScaleRotate(shift_limit=0.1, scale_limit=0.5, rotate_limit=0, border_mode=0)
    sized = A.RandomSizedCrop([240, 720], 480, 640, w2h_ratio=4 / 3)
    motion, persp = A.MotionBlur(3), A.Perspective()
    for _ in range(DRAWS):
        for key, value in ssr.get_params().items():
            add(f"ShiftScaleRotate/{key}", value)
        params = sized.get_params()
        add("RandomSizedCrop/crop_height", params["crop_height"])
        add("RandomSizedCrop/h_start", params["h_start"])
        params = persp.get_params_dependent_on_targets({"image": image})
        add("Perspective/max_width", params["max_width"])
        add("Perspective/max_height", params["max_height"])
        gauss = A.GaussNoise().get_params_dependent_on_targets({"image": image[:8, :8]})["gauss"]
        add("GaussNoise/mean_square", np.mean(gauss ** 2))
        kernel = motion.get_params()["kernel"]
        add("MotionBlur/centre", kernel[1, 1])
        add("MotionBlur/column", (kernel.sum(0) * np.arange(3)).sum())
        add("MotionBlur/row", (kernel.sum(1) * np.arange(3)).sum())
        add("CLAHE/clip_limit", A.CLAHE().get_params()["clip_limit"])
        for key, value in A.RandomBrightnessContrast().get_params().items():
            add(f"BrightnessContrast/{key}", value)
        add("RandomGamma/gamma", A.RandomGamma().get_params()["gamma"])
        for key, value in A.HueSaturationValue().get_params().items():
            add(f"HueSaturationValue/{key}", value)
        add("Sharpen/centre", A.Sharpen().get_params()["sharpening_matrix"][1, 1])
    captured = []
    original = arithmetic.add_elementwise

    def capture(image, values):
        captured.append(np.mean(values.astype(np.float64) ** 2))
        return original(image, values)

    arithmetic.add_elementwise = capture
    imgaug.seed(0)
    noise = A.IAAAdditiveGaussianNoise(p=1)
    for _ in range(DRAWS):
        noise(image=image[:8, :8])
    draws["AdditiveGaussianNoise/mean_square"] = captured
    ran = []
    one_of = A.OneOf([A.Lambda(image=lambda x, k=k, **_: ran.append(k) or x) for k in range(3)], p=0.9)
    for _ in range(DRAWS):
        before = len(ran)
        one_of(image=image[:2, :2])
        if len(ran) == before:
            ran.append(-1)
    draws["OneOf/member"] = ran
    for name, values in draws.items():
        out[f"law/{name}"] = np.asarray(values, dtype=np.float64)


def main():
    if A.__version__ != "1.0.0":
        sys.exit(f"albumentations {A.__version__} is installed: this records 1.0.0 (see the docstring)")
    out = {}
    cases(out)
    laws(out)
    np.savez_compressed(OUT, **out)
    versions = (f"albumentations {A.__version__}, imgaug {imgaug.__version__}, OpenCV {cv2.__version__}, "
                f"numpy {np.__version__}")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB): {versions}")


if __name__ == "__main__":
    main()
