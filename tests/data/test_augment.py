"""utils/data/augment.py against albumentations 1.0.0 itself: the outputs 1.0 (and imgaug 0.4 behind IAA*) computed
from fixed parameters, recorded by tools/record_albumentations_1_0.py, pixel for pixel; and the parameter laws,
many seeded draws of ours against 1.0's own recorded draws (moments within 4 standard errors: the seeds are
fixed, so the comparison is deterministic)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.data import augment as aug
from utils.data import warps

FIXTURE = np.load(Path(__file__).with_name("albumentations_1_0.npz"))
RNG = np.random.default_rng


def case(name):
    return {k.split("/", 1)[1]: FIXTURE[k] for k in FIXTURE.files if k.startswith(name + "/")}


def check(name, t, **params):
    """Our transform `t` with `params` gives 1.0's recorded outputs for the case."""
    c = case(name)
    for target in ("image", "mask"):
        if f"out_{target}" in c:
            ours, theirs = getattr(t, target)(c[f"in_{target}"], **params), c[f"out_{target}"]
            assert ours.dtype == np.uint8 and ours.shape == theirs.shape, f"{name} {target}: {ours.shape}"
            diff = np.abs(ours.astype(int) - theirs)
            assert diff.max() == 0, f"{name} {target}: {np.count_nonzero(diff)} pixels differ, by up to {diff.max()}"


def test_flip_pads_and_crops_are_1_0_s():
    check("HorizontalFlip", aug.HorizontalFlip())
    for k in (0, 1):
        c = case(f"PadIfNeeded{k}")
        pad = aug.PadIfNeeded(*c["size"], fill=int(c["fill"]), fill_mask=int(c["fill_mask"]))
        check(f"PadIfNeeded{k}", pad, **pad.params(RNG(0), c["in_image"]))
    c = case("RandomCrop")
    check("RandomCrop", aug.RandomCrop(*c["size"]), starts=tuple(c["starts"]))
    check("CenterCrop", aug.CenterCrop(*case("CenterCrop")["size"]))
    c = case("RandomSizedCrop")
    check("RandomSizedCrop", aug.RandomSizedCrop((10, 24), tuple(c["size"]), 4 / 3),
          crop_size=tuple(c["crop_size"]), starts=tuple(c["starts"]))


def test_shift_scale_rotate_is_1_0_s_with_its_zero_borders():
    for k in (0, 1):
        c = case(f"ShiftScaleRotate{k}")
        matrix = aug.ShiftScaleRotate.matrix((24, 32), float(c["angle"]), float(c["scale"]), float(c["dx"]),
                                             float(c["dy"]))
        check(f"ShiftScaleRotate{k}", aug.ShiftScaleRotate(0.1, 0.5, 0, fill=0, fill_mask=0), matrix=matrix)


def test_perspective_is_1_0_s_from_the_same_corner_draws():
    """1.0 warps the quadrilateral onto its (max_height, max_width) rectangle and resizes back: no extra zoom
    (2.x's), masks nearest with the image's border value 0 there."""
    for k in range(3):
        c = case(f"Perspective{k}")
        check(f"Perspective{k}", aug.Perspective(p=1, fill_mask=0), **aug.Perspective.warp((24, 32), c["normals"]))


def test_iaa_perspective_was_1_0_s_perspective_at_p_0_5():
    assert bool(FIXTURE["IAAPerspective/is_perspective"])
    assert FIXTURE["IAAPerspective/p"].tolist() == [0.5, 0.5, 0.5]


def test_noises_are_1_0_s_and_imgaug_s_from_the_same_draws():
    for k, per_channel in enumerate([True, False]):
        check(f"GaussNoise{k}", aug.GaussNoise(per_channel=per_channel), gauss=case(f"GaussNoise{k}")["gauss"])
    check("AdditiveGaussianNoise", aug.AdditiveGaussianNoise(), noise=case("AdditiveGaussianNoise")["noise"])


def test_photometric_transforms_are_1_0_s():
    check("CLAHE", aug.CLAHE(), clip_limit=float(case("CLAHE")["clip_limit"]))
    for k in range(3):
        c = case(f"BrightnessContrast{k}")
        check(f"BrightnessContrast{k}", aug.BrightnessContrast(), alpha=float(c["alpha"]), beta=float(c["beta"]))
    for k in range(2):
        check(f"RandomGamma{k}", aug.RandomGamma(), gamma=float(case(f"RandomGamma{k}")["gamma"]))
    check("HueSaturationValue", aug.HueSaturationValue(), shifts=tuple(case("HueSaturationValue")["shifts"]))


def test_sharpen_blur_and_motion_blur_are_1_0_s_and_imgaug_s():
    for name in ("Sharpen", "IAASharpen"):
        c = case(name)
        check(name, aug.Sharpen(), kernel=aug.Sharpen.kernel(float(c["alpha"]), float(c["lightness"])))
    check("Blur", aug.Blur(3), ksize=3)
    for k in range(3):
        check(f"MotionBlur{k}", aug.MotionBlur(3), kernel=aug.MotionBlur.kernel(3, *case(f"MotionBlur{k}")["line"]))


def law(name):
    return FIXTURE[f"law/{name}"]


def same_law(ours, theirs, name):
    """Means and standard deviations agree within 4 standard errors of their difference."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    se = np.sqrt(ours.var() / ours.size + theirs.var() / theirs.size)
    assert abs(ours.mean() - theirs.mean()) <= 4 * se + 1e-12, f"{name}: mean {ours.mean()} vs 1.0's {theirs.mean()}"
    # The standard deviation's standard error, for a distribution of this kurtosis (ours stands for both).
    kurt = ((ours - ours.mean()) ** 4).mean() / max(ours.var() ** 2, 1e-300)
    se_sd = ours.std() * np.sqrt(max(kurt - 1, 0) / 4 * (1 / ours.size + 1 / theirs.size))
    assert abs(ours.std() - theirs.std()) <= 4 * se_sd + 1e-12, f"{name}: sd {ours.std()} vs 1.0's {theirs.std()}"


def draws(t, image, n=2000, seed=0):
    rng = RNG(seed)
    return [t.params(rng, image) for _ in range(n)]


IMAGE = np.zeros((100, 120, 3), np.uint8)


def test_geometric_laws_are_1_0_s():
    ssr = draws(aug.ShiftScaleRotate(0.1, 0.5, 0, fill=0, fill_mask=0), IMAGE)
    matrices = np.array([d["matrix"] for d in ssr])
    same_law(matrices[:, 0, 0], law("ShiftScaleRotate/scale"), "scale")
    # The translation is (1 - scale) x centre + shift: the shift alone is left once the scale's part is removed.
    dx = (matrices[:, 0, 2] - (1 - matrices[:, 0, 0]) * 60) / 120
    same_law(dx, law("ShiftScaleRotate/dx"), "dx")
    sized = draws(aug.RandomSizedCrop((240, 720), (480, 640), 4 / 3), np.zeros((720, 960, 3), np.uint8))
    same_law([d["crop_size"][0] for d in sized], law("RandomSizedCrop/crop_height"), "crop height")
    same_law([d["starts"][0] for d in sized], law("RandomSizedCrop/h_start"), "h_start")
    persp = draws(aug.Perspective(p=1, fill_mask=0), IMAGE)
    same_law([d["source"][0].shape[1] for d in persp], law("Perspective/max_width"), "perspective width")
    same_law([d["source"][0].shape[0] for d in persp], law("Perspective/max_height"), "perspective height")


def test_noise_laws_are_1_0_s_variance_and_imgaug_s_standard_deviation():
    """1.0's GaussNoise draws the variance uniformly (mean noise power 30), imgaug's the standard deviation."""
    small = IMAGE[:8, :8]
    gauss = [np.mean(d["gauss"] ** 2) for d in draws(aug.GaussNoise(), small)]
    same_law(gauss, law("GaussNoise/mean_square"), "GaussNoise power")
    noise = [np.mean(d["noise"] ** 2) for d in draws(aug.AdditiveGaussianNoise(), small)]
    same_law(noise, law("AdditiveGaussianNoise/mean_square"), "AdditiveGaussianNoise power")


def test_kernel_and_colour_laws_are_1_0_s():
    motion = np.array([d["kernel"] for d in draws(aug.MotionBlur(3), IMAGE)])
    same_law(motion[:, 1, 1], law("MotionBlur/centre"), "motion centre")  # 1.0's lines are often off-centre
    same_law((motion.sum(1) * np.arange(3)).sum(1), law("MotionBlur/column"), "motion column")
    same_law((motion.sum(2) * np.arange(3)).sum(1), law("MotionBlur/row"), "motion row")
    same_law([d["clip_limit"] for d in draws(aug.CLAHE(), IMAGE)], law("CLAHE/clip_limit"), "clip limit")
    bc = draws(aug.BrightnessContrast(), IMAGE)
    same_law([d["alpha"] for d in bc], law("BrightnessContrast/alpha"), "alpha")
    same_law([d["beta"] for d in bc], law("BrightnessContrast/beta"), "beta")
    same_law([d["gamma"] for d in draws(aug.RandomGamma(), IMAGE)], law("RandomGamma/gamma"), "gamma")
    hsv = np.array([d["shifts"] for d in draws(aug.HueSaturationValue(), IMAGE)])
    for k, name in enumerate(("hue_shift", "sat_shift", "val_shift")):
        same_law(hsv[:, k], law(f"HueSaturationValue/{name}"), name)
    sharp = [d["kernel"][1, 1] for d in draws(aug.Sharpen(), IMAGE)]
    same_law(sharp, law("Sharpen/centre"), "sharpen centre")


def test_one_of_law_is_1_0_s():
    """p 0.9 that a member runs, each member equally likely."""
    members = [aug.Transform() for _ in range(3)]
    for k, m in enumerate(members):
        m.image = lambda image, k=k: np.full_like(image, k)
    one_of, rng, image = aug.OneOf(members, p=0.9), RNG(0), np.full((1, 1, 3), 9, np.uint8)
    ran = [int(one_of(rng, image, image[..., 0])[0][0, 0, 0]) for _ in range(2000)]
    ran = np.where(np.array(ran) == 9, -1, ran)
    for k in (-1, 0, 1, 2):
        same_law(ran == k, law("OneOf/member") == k, f"member {k}")


def test_a_wrong_law_fails_the_comparison():
    """The moment check is sharp enough to tell 2.x's laws from 1.0's: the standard deviation drawn uniformly
    (2.x's GaussNoise) and a centred motion-blur line are refused."""
    rng = RNG(1)
    wrong = [np.mean(rng.normal(0, rng.uniform(10 ** 0.5, 50 ** 0.5), 192) ** 2) for _ in range(2000)]
    with pytest.raises(AssertionError):
        same_law(wrong, law("GaussNoise/mean_square"), "std-uniform noise")
    with pytest.raises(AssertionError):
        same_law(np.full(2000, 1 / 3), law("MotionBlur/centre"), "centred line")


def test_positions_far_outside_the_frame_stay_outside():
    """A source position beyond int16 saturates (as OpenCV 4's saturate_cast) rather than wrapping back into
    the frame: the pixel is border."""
    far = np.array([[(2 ** 16 + 3) * 32, 5 * 32]], np.int64)  # int16 would wrap it to column 3
    image = np.full((8, 8, 3), 200, np.uint8)
    out = warps.remap(image, warps.positions(far[:, :1], far[:, 1:], cv2.INTER_LINEAR), cv2.INTER_LINEAR, 7)
    assert out.shape == (1, 1, 3) and (out == 7).all()


def stepwise(transforms, seed, image, mask):
    """A pipeline's steps one after the other, as Compose ran them before it fused the warp, pad and crop."""
    rng = RNG(seed)
    for t in transforms:
        image, mask = t(rng, image, mask)
    return image, mask, rng.random()


@pytest.mark.parametrize("frame", [(72, 96), (40, 30), (33, 35)])
def test_warp_pad_crop_is_the_three_steps(frame):
    """Compose's fused ShiftScaleRotate + PadIfNeeded + RandomCrop (the warp computed only where the crop keeps
    it) gives the pixels and leaves the generator where the three steps one after the other do: crops inside
    the frame, crops that pad, a warp with p < 1 that sometimes does not run, a zoom far out of the frame."""
    rng = RNG(3)
    image = rng.integers(0, 256, (*frame, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, frame, dtype=np.uint8)
    for warp in (aug.ShiftScaleRotate(0.1, 0.5, 0, fill=0, fill_mask=9),
                 aug.ShiftScaleRotate(0.6, 0.9, 0, fill=3, fill_mask=7, p=0.5)):
        steps = [aug.HorizontalFlip(), warp, aug.PadIfNeeded(36, 40, fill=5, fill_mask=8), aug.RandomCrop(36, 40)]
        pipeline = aug.Compose(steps)
        for seed in range(40):
            pipeline.set_random_seed(seed)
            out = pipeline(image, mask)
            want_image, want_mask, after = stepwise(steps, seed, image, mask)
            assert np.array_equal(out["image"].numpy(), want_image.transpose(2, 0, 1)), seed
            assert np.array_equal(out["mask"].numpy(), want_mask), seed
            assert pipeline.rng.random() == after, seed


def test_nearest_warp_without_rotation_indexes_as_remap_does():
    """The mask's warp by direct indexing (no rotation) is cv2.remap's nearest on 4.x's maps: whole frames and
    windows, zoomed in and out, shifted partly and wholly out of the frame."""
    mask = RNG(4).integers(0, 9, (37, 53), dtype=np.uint8)
    for scale, dx, dy in ((0.5, 0.1, -0.1), (1.5, -0.1, 0.1), (1.0, 0.0, 0.0), (0.7, 2.0, 0.0), (3.0, 0.0, -1.5)):
        matrix = aug.ShiftScaleRotate.matrix(mask.shape, 0.0, scale, dx, dy)
        for rows, cols in ((None, None), (range(3, 30), range(10, 53)), (range(0, 1), range(52, 53))):
            direct = warps.warp_affine(mask, matrix, cv2.INTER_NEAREST, 9, rows, cols)
            rows_, cols_ = rows or range(37), cols or range(53)
            maps = warps.affine_maps(matrix, mask.shape, cv2.INTER_NEAREST, rows_, cols_)
            assert np.array_equal(direct, warps.remap(mask, maps, cv2.INTER_NEAREST, 9)), (scale, dx, dy, rows)


def test_perspective_maps_in_strips_are_the_whole_frame_s(monkeypatch):
    """The perspective source and maps, computed a strip of rows at a time, are the whole-frame expressions'
    numbers (a frame of many strips; the second matrix has output pixels where w is 0)."""
    monkeypatch.setattr(warps, "STRIP", 1 << 13)
    for matrix in (cv2.getPerspectiveTransform(np.float32([[3, 2], [610, 9], [590, 470], [8, 455]]),
                                               np.float32([[0, 0], [620, 0], [620, 480], [0, 480]])),
                   np.array([[1.0, 0.2, 3.0], [0.1, 1.0, -4.0], [0.0, 0.004, -1.0]])):
        size = (480, 620)
        m = cv2.invert(matrix)[1]
        x, y = np.arange(size[1], dtype=np.float64)[None], np.arange(size[0], dtype=np.float64)[:, None]
        den = (m[2, 1] * y + m[2, 2]) + m[2, 0] * x
        with np.errstate(divide="ignore"):
            inv = 1 / den
        inv[den == 0] = 0
        whole = [((b * y + c) + a * x) * inv for a, b, c in m[:2]]
        source = warps.perspective_source(matrix, size)
        assert len(warps.strips(*size)) > 1 and all(np.array_equal(s, v) for s, v in zip(source, whole))
        for interpolation, scale in ((cv2.INTER_LINEAR, 32), (cv2.INTER_NEAREST, 1)):
            rounded = [np.rint(np.clip(v * scale, -2 ** 31, 2 ** 31 - 1)).astype(np.int32) for v in whole]
            want = warps.positions(*rounded, interpolation)
            got = warps.perspective_maps(source, interpolation)
            assert np.array_equal(got[0], want[0]) and got[0].dtype == np.int16
            assert (got[1] is None and want[1] is None) or (np.array_equal(got[1], want[1])
                                                             and got[1].dtype == np.uint16)
