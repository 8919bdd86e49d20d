"""Generate the project's synthetic CamVid-format sample (dataset/camvid).

The real CamVid frames are third-party data and cannot ship with the project, but the
training, evaluation and figure code need a dataset in the real folder layout to run end to
end. This script draws street-like scenes (sky, buildings, trees, road, pavement, clutter)
with the thin and small objects AFMA is about (poles, signs, fences, pedestrians, cyclists),
using noisy per-class textures so the task is learnable but not trivial.

Output is byte-identical for a given seed (numpy's seeded generator + cv2 drawing + PNG),
so the committed files can be checked against a fresh run.

Usage: python tools/make_sample.py [--out dataset/camvid] [--seed 0]
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from utils.data.datasets import SPLITS  # noqa: E402

HEIGHT, WIDTH = 720, 960
IMAGES_PER_SPLIT = 6
(SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST,
 UNLABELLED) = range(12)
NUM_CLASSES = 12
# Per-class strength of the pixel noise: trees are rough, sky is smooth. Differing texture
# statistics give the network a cue beyond colour, as in real scenes.
NOISE_STD = np.array([2, 6, 5, 5, 7, 16, 6, 8, 6, 8, 8, 10], np.float32)
# Run-length zlib is both faster and smaller than the default strategy on these block-noise
# images (the noise cells repeat along rows).
PNG_FLAGS = [cv2.IMWRITE_PNG_COMPRESSION, 9, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


class Canvas:
    """A label map and an RGB image drawn together so they stay pixel-aligned."""

    def __init__(self, rng):
        self.rng = rng
        self.label = np.full((HEIGHT, WIDTH), SKY, np.uint8)
        self.rgb = np.zeros((HEIGHT, WIDTH, 3), np.float32)

    def draw(self, cls, colour, fn, *args, **kwargs):
        """Draw one cv2 primitive into both the label map (as `cls`) and the image."""
        fn(self.label, *args, color=int(cls), **kwargs)
        self.paint(colour, fn, *args, **kwargs)

    def paint(self, colour, fn, *args, **kwargs):
        """Draw into the image only: texture inside a region that keeps its label."""
        fn(self.rgb, *args, color=tuple(float(c) for c in colour), **kwargs)

    def jitter(self, colour, amount=20):
        """A colour varied per object instance, so instances of a class differ."""
        return np.clip(np.asarray(colour) + self.rng.integers(-amount, amount + 1, 3), 0, 255)


def draw_sky(c):
    """Vertical blue-to-haze gradient over the whole frame (everything else covers it)."""
    top, bottom = c.jitter((120, 160, 215), 15), c.jitter((200, 215, 230), 10)
    t = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]
    c.rgb[:] = top * (1 - t) + bottom * t


def draw_buildings(c, ground):
    """A row of facades with window grids, leaving gaps where the sky shows through."""
    x = int(c.rng.integers(-40, 0))
    while x < WIDTH:
        width = int(c.rng.integers(90, 230))
        if c.rng.random() < 0.25:  # a gap: open sky between buildings
            x += width // 2
            continue
        top = int(c.rng.integers(40, ground - 120))
        wall = c.jitter(c.rng.choice([(150, 120, 100), (170, 160, 140), (120, 110, 110)]), 25)
        c.draw(BUILDING, wall, cv2.rectangle, (x, top), (x + width, ground), thickness=-1)
        window = wall * 0.45
        for wy in range(top + 12, ground - 30, 34):
            for wx in range(x + 10, x + width - 20, 28):
                c.paint(window, cv2.rectangle, (wx, wy), (wx + 14, wy + 20), thickness=-1)
        x += width


def draw_ground(c, ground, vanish_x):
    """Pavement across the ground plane, a perspective road on it, lane marks and tiles."""
    pavement = c.jitter((150, 140, 130), 15)
    c.draw(PAVEMENT, pavement, cv2.rectangle, (0, ground), (WIDTH, HEIGHT), thickness=-1)
    for y in range(ground + 8, HEIGHT, 22):  # tile joints: texture only
        c.paint(pavement * 0.8, cv2.line, (0, y), (WIDTH, y), thickness=1)
    half_top, half_bottom = int(c.rng.integers(90, 140)), int(c.rng.integers(520, 700))
    road = np.array([[vanish_x - half_top, ground + 12], [vanish_x + half_top, ground + 12],
                     [vanish_x + half_bottom, HEIGHT], [vanish_x - half_bottom, HEIGHT]])
    c.draw(ROAD, c.jitter((90, 90, 95), 10), cv2.fillPoly, [road.astype(np.int32)])
    for y in range(ground + 30, HEIGHT, 60):  # dashed centre line
        depth = (y - ground) / (HEIGHT - ground)
        half = int(2 + 6 * depth)
        c.paint((215, 215, 205), cv2.rectangle, (vanish_x - half, y),
                (vanish_x + half, y + int(10 + 25 * depth)), thickness=-1)
    return road


def draw_trees(c, ground):
    """Clusters of green blobs on trunks, standing on the back of the pavement."""
    for _ in range(int(c.rng.integers(2, 4))):
        x, radius = int(c.rng.integers(40, WIDTH - 40)), int(c.rng.integers(35, 70))
        crown_y = ground - int(c.rng.integers(60, 140))
        leaf = c.jitter((70, 120, 50), 20)
        c.draw(TREE, leaf * 0.6, cv2.rectangle, (x - 5, crown_y), (x + 5, ground + 10),
               thickness=-1)
        for _ in range(5):
            dx, dy = c.rng.integers(-radius, radius + 1, 2) // 2
            r = int(radius * c.rng.uniform(0.5, 0.9))
            c.draw(TREE, c.jitter(leaf, 15), cv2.circle, (x + int(dx), crown_y + int(dy)), r,
                   thickness=-1)


def draw_clutter(c, ground):
    """Unlabelled odds and ends (bins, boxes, shop signs) in arbitrary colours."""
    for _ in range(int(c.rng.integers(3, 6))):
        x, y = int(c.rng.integers(0, WIDTH - 40)), int(c.rng.integers(ground - 60, ground + 40))
        w, h = (int(v) for v in c.rng.integers(15, 45, 2))
        c.draw(UNLABELLED, c.rng.integers(20, 236, 3), cv2.rectangle, (x, y), (x + w, y + h),
               thickness=-1)


def draw_fences(c, ground, sides):
    """Lattice fence segments: thin rails and bars, with the background seen between them."""
    for x0 in sides:
        length, height = int(c.rng.integers(110, 200)), int(c.rng.integers(28, 45))
        x0 = int(np.clip(x0 - length // 2, 0, WIDTH - length))
        base = ground + int(c.rng.integers(20, 45))
        colour = c.jitter((110, 85, 60), 20)
        for y in (base - height, base - height // 2):
            c.draw(FENCE, colour, cv2.rectangle, (x0, y), (x0 + length, y + 2), thickness=-1)
        for x in range(x0, x0 + length + 1, int(c.rng.integers(9, 14))):
            c.draw(FENCE, colour, cv2.rectangle, (x, base - height), (x + 2, base), thickness=-1)


def draw_car(c, x, bottom, width):
    """A car: body, darker windows and wheels, all labelled car."""
    height = int(width * 0.55)
    body = c.rng.choice([(170, 30, 30), (30, 60, 150), (200, 200, 200), (40, 40, 40),
                         (200, 180, 40)])
    c.draw(CAR, c.jitter(body), cv2.rectangle, (x, bottom - int(height * 0.6)), (x + width, bottom),
           thickness=-1)
    cabin = np.array([[x + width * 0.15, bottom - height * 0.6],
                      [x + width * 0.3, bottom - height], [x + width * 0.75, bottom - height],
                      [x + width * 0.88, bottom - height * 0.6]])
    c.draw(CAR, (60, 70, 85), cv2.fillPoly, [cabin.astype(np.int32)])
    for wx in (x + width // 5, x + 4 * width // 5):
        c.draw(CAR, (20, 20, 20), cv2.circle, (wx, bottom), max(3, width // 10), thickness=-1)


def draw_cars(c, ground, vanish_x):
    """Cars on the road, bigger the nearer they are (lower in the frame)."""
    for _ in range(int(c.rng.integers(2, 4))):
        bottom = int(c.rng.integers(ground + 40, HEIGHT - 40))
        depth = (bottom - ground) / (HEIGHT - ground)
        width = int(60 + 200 * depth)
        x = vanish_x + int(c.rng.uniform(-1.0, 0.6) * (100 + 500 * depth))
        draw_car(c, x, bottom, width)


def draw_poles_and_signs(c, ground, xs):
    """Thin poles on the pavement, several carrying a small sign near the top."""
    for i, x in enumerate(xs):
        bottom = ground + int(c.rng.integers(25, 90))
        top = int(c.rng.integers(90, ground - 60))
        width = int(c.rng.integers(3, 7))
        c.draw(POLE, c.jitter((115, 115, 110), 20), cv2.rectangle, (x, top), (x + width, bottom),
               thickness=-1)
        if i % 3 != 2:  # every third pole carries no sign
            draw_sign(c, x + width // 2, top + int(c.rng.integers(5, 25)))


def draw_sign(c, cx, cy):
    """A small traffic sign: a red/blue/yellow disc or plate with a white centre."""
    colour = c.jitter(c.rng.choice([(200, 30, 30), (30, 70, 180), (230, 190, 30)]), 15)
    size = int(c.rng.integers(8, 13))
    if c.rng.random() < 0.5:
        c.draw(SIGN, colour, cv2.circle, (cx, cy), size, thickness=-1)
        c.paint((235, 235, 235), cv2.circle, (cx, cy), size // 2, thickness=-1)
    else:
        c.draw(SIGN, colour, cv2.rectangle, (cx - size, cy - size), (cx + size, cy + size),
               thickness=-1)
        c.paint((235, 235, 235), cv2.rectangle, (cx - size // 2, cy - size // 2),
                (cx + size // 2, cy + size // 2), thickness=-1)


def draw_person(c, cls, x, feet, height):
    """A pedestrian-sized figure (about 15x40 px at height 40): head, torso, legs."""
    head = max(3, height // 9)
    torso_top, hips = feet - int(height * 0.8), feet - int(height * 0.42)
    half = max(4, height // 6)
    c.draw(cls, c.jitter((200, 160, 130), 20), cv2.circle, (x, torso_top - head), head,
           thickness=-1)
    c.draw(cls, c.rng.integers(20, 236, 3), cv2.rectangle, (x - half, torso_top), (x + half, hips),
           thickness=-1)
    legs = c.jitter((45, 45, 70), 20)
    c.draw(cls, legs, cv2.rectangle, (x - half + 1, hips), (x - 1, feet), thickness=-1)
    c.draw(cls, legs, cv2.rectangle, (x + 1, hips), (x + half - 1, feet), thickness=-1)


def draw_cyclist(c, x, ground_y, height):
    """A rider on a bicycle: two thin wheels, a frame and a person, all labelled bicyclist."""
    r = max(6, height // 5)
    frame = c.jitter((30, 30, 30), 15)
    for wx in (x - int(1.4 * r), x + int(1.4 * r)):
        c.draw(BICYCLIST, frame, cv2.circle, (wx, ground_y - r), r, thickness=2)
    c.draw(BICYCLIST, frame, cv2.line, (x - int(1.4 * r), ground_y - r), (x, ground_y - 2 * r),
           thickness=2)
    c.draw(BICYCLIST, frame, cv2.line, (x, ground_y - 2 * r), (x + int(1.4 * r), ground_y - r),
           thickness=2)
    draw_person(c, BICYCLIST, x, ground_y - r, height)


def draw_people(c, ground, road):
    """Pedestrians on the pavement and cyclists at the road edge, small as in CamVid."""
    for _ in range(int(c.rng.integers(3, 6))):
        feet = int(c.rng.integers(ground + 30, ground + 160))
        x = int(c.rng.integers(20, WIDTH - 20))
        draw_person(c, PEDESTRIAN, x, feet, int(34 + 30 * (feet - ground) / (HEIGHT - ground)))
    for _ in range(int(c.rng.integers(1, 3))):
        y = int(c.rng.integers(ground + 60, ground + 200))
        t = (y - road[0, 1]) / (HEIGHT - road[0, 1])  # road edge at this row
        left = road[0, 0] + t * (road[3, 0] - road[0, 0])
        x = int(np.clip(left + c.rng.integers(20, 60), 30, WIDTH - 30))
        draw_cyclist(c, x, y, int(38 + 25 * (y - ground) / (HEIGHT - ground)))


def add_shadow(c, vanish_x, ground):
    """Darken a region across road and pavement: appearance changes, labels do not."""
    x = vanish_x + int(c.rng.integers(-300, 300))
    poly = np.array([[x, ground + 40], [x + 120, ground + 40], [x + 400, HEIGHT],
                     [x + 150, HEIGHT]])
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillPoly(mask, [poly.astype(np.int32)], 1)
    c.rgb[mask == 1] *= 0.7


def add_noise(c):
    """Block noise (4x4 px cells) scaled per class, plus an overall exposure change.

    Coarse cells keep the PNGs small (rows repeat) while still giving noisy textures.
    """
    cells = c.rng.normal(0, 1, (HEIGHT // 4, WIDTH // 4, 3)).astype(np.float32)
    noise = np.repeat(np.repeat(cells, 4, axis=0), 4, axis=1)
    c.rgb += noise * NOISE_STD[c.label][..., None]
    c.rgb *= c.rng.uniform(0.8, 1.15)


def make_scene(rng):
    """Draw one street scene; return (RGB uint8 image, uint8 label map)."""
    c = Canvas(rng)
    ground = int(rng.integers(300, 360))
    vanish_x = int(rng.integers(400, 560))
    draw_sky(c)
    draw_buildings(c, ground)
    road = draw_ground(c, ground, vanish_x)
    draw_trees(c, ground)
    draw_clutter(c, ground)
    draw_fences(c, ground, (int(rng.integers(60, 300)), int(rng.integers(660, 900))))
    draw_cars(c, ground, vanish_x)
    pole_xs = np.sort(rng.choice(np.arange(20, WIDTH - 20, 30), int(rng.integers(4, 7)), False))
    draw_poles_and_signs(c, ground, [int(x) for x in pole_xs])
    draw_people(c, ground, road)
    add_shadow(c, vanish_x, ground)
    add_noise(c)
    return np.clip(np.rint(c.rgb), 0, 255).astype(np.uint8), c.label


def write_png(path, array):
    """Write a compressed PNG; fail loudly rather than leave a gap in the sample."""
    if not cv2.imwrite(str(path), array, PNG_FLAGS):
        raise OSError(f"could not write {path}")


def make_sample(out_dir, seed=0):
    """Write the sample to out_dir (train/, trainannot/, val/, ...); return the image paths.

    Each image gets its own generator seeded by (seed, split, index), so one scene does not
    depend on how many random draws the scenes before it made.
    """
    out_dir = Path(out_dir)
    written = []
    for split_index, split in enumerate(SPLITS):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        (out_dir / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(IMAGES_PER_SPLIT):
            image, label = make_scene(np.random.default_rng([seed, split_index, i]))
            missing = set(range(NUM_CLASSES)) - set(np.unique(label).tolist())
            if missing:
                raise RuntimeError(f"scene {split} {i} lacks classes {sorted(missing)}")
            name = f"{split}_{i:03d}.png"
            write_png(out_dir / split / name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            write_png(out_dir / f"{split}annot" / name, label)
            written.append(out_dir / split / name)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="dataset/camvid", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()
    paths = make_sample(args.out, args.seed)
    print(f"wrote {len(paths)} images with labels to {args.out}")


if __name__ == "__main__":
    main()
