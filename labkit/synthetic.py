"""A small synthetic stand-in for Oxford-IIIT Pet, written in the dataset's own on-disk layout.

The lab must run on a fresh clone with no internet, and the tests need a dataset they can build
in seconds. `make_synthetic` draws cat- and dog-like figures (body, head, ears, legs, tail, fur
texture, a coat pattern per breed) on cluttered textured backgrounds whose shapes borrow the
pets' colours, so a model has to learn shape and fur rather than colour. Everything comes from
one seeded generator per photo: the same seed gives byte-identical files, however many processes
draw them. `write_synthetic` writes any `DatasetShape` (`labkit.synthetic_shape`), such as the
one shaped like the full dataset that `python -m labkit synthetic --like-full` writes.
"""

import functools
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

# BREEDS is imported here too because it always was: the six breeds of the default set.
from labkit.synthetic_shape import BREEDS, Breed, DatasetShape, PlannedPhoto, breed_ids, small_shape  # noqa: F401

PET, BACKGROUND, BORDER = 1, 2, 3  # trimap values, as in annotations/README

# The official list.txt starts with these comment lines; loaders must skip them.
LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)

MARKER_TEXT = """# Synthetic data

This folder is a synthetic stand-in for the Oxford-IIIT Pet dataset, written by
`labkit.synthetic.make_synthetic` in the dataset's own layout (images/, annotations/trimaps/,
annotations/trainval.txt, test.txt, list.txt). The "pets" are drawn shapes (body, head, ears,
legs, tail, fur) on cluttered backgrounds; breed names starting with a capital letter are cats,
lower-case ones dogs, as in the real dataset. It lets the lab and its tests run offline, but
scores measured on it say nothing about real photos.

To get the real dataset (about 800 MB), run `python -m labkit download`, or point `LABKIT_DATA`
at a folder that holds it.
"""


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int, channels: int = 1
                 ) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bicubically."""
    layers = []
    for _ in range(channels):
        grid = rng.random((cells, cells)).astype(np.float32)
        layer = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
        layers.append(np.asarray(layer))
    return np.clip(np.stack(layers, axis=-1), 0.0, 1.0)  # (H, W, channels)


def random_colour(rng: np.random.Generator, palette: list) -> tuple[int, int, int]:
    """A jittered palette colour half of the time, so clutter can look like fur; else any colour."""
    if rng.random() < 0.5:
        base = np.array(palette[rng.integers(len(palette))], dtype=float)
        return tuple(int(c) for c in np.clip(base + rng.normal(0, 20, 3), 0, 255))
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def draw_background(rng: np.random.Generator, width: int, height: int, palette: list) -> np.ndarray:
    """A cluttered scene: a two-colour gradient, blotchy colour noise and random flat shapes,
    some in pet colours. Returns (H, W, 3) float32 in [0, 255]."""
    top, bottom = rng.integers(0, 256, (2, 3)).astype(np.float32)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    scene = top * (1 - ramp) + bottom * ramp + (smooth_noise(rng, height, width, 5, 3) - 0.5) * 80
    canvas = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(6, 14))):
        x0, x1 = sorted(rng.integers(-width // 4, width + width // 4, 2))
        y0, y1 = sorted(rng.integers(-height // 4, height + height // 4, 2))
        colour, kind = random_colour(rng, palette), rng.integers(4)
        if kind == 0:
            draw.ellipse((x0, y0, x1 + 4, y1 + 4), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 2:
            corners = rng.integers(0, max(width, height), (int(rng.integers(3, 6)), 2))
            draw.polygon([(int(x), int(y)) for x, y in corners], fill=colour)
        else:
            thickness = int(rng.integers(2, max(3, width // 12)))
            draw.line((x0, y0, x1, y1), fill=colour, width=thickness)
    grain = rng.normal(0, 4, (height, width, 3)).astype(np.float32)
    return np.asarray(canvas, dtype=np.float32) + grain


def around(centre: float, radius: float, length: int) -> slice:
    """The pixels from a pixel short of `centre - radius` to one past `centre + radius`, within
    0..length: a disc's bounding box along one axis, a pixel wider on each side than rounding needs."""
    return slice(max(0, int(np.floor(centre - radius)) - 1), max(0, min(length, int(np.ceil(centre + radius)) + 2)))


def draw_coat(rng: np.random.Generator, breed: Breed, width: int, height: int) -> np.ndarray:
    """Fur for the whole canvas (the pet's silhouette is cut out of it later): base colour, the
    breed's pattern, fine streaky fur and soft shading. Returns (H, W, 3) float32."""
    colours = np.array(breed.colours, dtype=np.float32)
    colours += rng.normal(0, 12, colours.shape).astype(np.float32)
    coat = np.broadcast_to(colours[0], (height, width, 3)).copy()
    y, x = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]
    if breed.pattern == "stripes":
        angle = rng.uniform(-0.5, 0.5) + np.pi / 2
        period = rng.uniform(0.06, 0.1) * min(width, height)
        wobble = 3 * smooth_noise(rng, height, width, 4)[..., 0]
        wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) / period * 2 * np.pi + wobble)
        coat[wave > 0.3] = colours[1]
    elif breed.pattern == "patches":
        blobs = smooth_noise(rng, height, width, 7, 2)
        coat[blobs[..., 0] > 0.62] = colours[1]
        coat[blobs[..., 1] > 0.68] = colours[2]
    elif breed.pattern == "spots":
        for cx, cy in rng.random((int(rng.integers(25, 45)), 2)) * (width, height):
            radius = rng.uniform(0.015, 0.035) * min(width, height)
            rows, columns = around(cy, radius, height), around(cx, radius, width)  # the spot's box
            spot = (x[:, columns] - cx) ** 2 + (y[rows] - cy) ** 2 < radius**2
            coat[rows, columns][spot] = colours[1]
    streaks = rng.normal(0, 1, (height, width + 4)).astype(np.float32)
    fur = sum(streaks[:, i : i + width] for i in range(5)) / np.sqrt(5)  # hair runs horizontally
    coat += fur[..., None] * 22
    coat *= 0.8 + 0.4 * smooth_noise(rng, height, width, 3)  # uneven lighting
    return coat


@dataclass(frozen=True)
class Pose:
    """Where the pet stands: body centre, half-length and half-depth, head centre and radius."""

    cx: float
    cy: float
    length: float
    depth: float
    hx: float
    hy: float
    head: float
    facing: int  # +1 looks right, -1 looks left


def random_pose(rng: np.random.Generator, width: int, height: int) -> Pose:
    side = min(width, height)
    length = rng.uniform(0.22, 0.34) * side
    depth = length * rng.uniform(0.45, 0.6)
    cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.45, 0.62)
    facing = 1 if rng.random() < 0.5 else -1
    head = length * rng.uniform(0.42, 0.52)
    return Pose(cx, cy, length, depth, cx + facing * length * 0.95, cy - depth * 0.9, head, facing)


def fill_ellipse(draw: ImageDraw.ImageDraw, x: float, y: float, radius_x: float, radius_y: float
                 ) -> None:
    draw.ellipse((x - radius_x, y - radius_y, x + radius_x, y + radius_y), fill=255)


def draw_body(draw: ImageDraw.ImageDraw, pose: Pose, rng: np.random.Generator) -> None:
    """Four legs, an elliptical body and a round head: what cats and dogs share."""
    leg = max(3.0, pose.depth * 0.45)
    for offset in (-0.7, -0.45, 0.45, 0.7):
        x, bottom = pose.cx + offset * pose.length, pose.cy + pose.depth * rng.uniform(1.4, 1.8)
        draw.rectangle((x - leg / 2, pose.cy, x + leg / 2, bottom), fill=255)
    fill_ellipse(draw, pose.cx, pose.cy, pose.length, pose.depth)
    fill_ellipse(draw, pose.hx, pose.hy, pose.head, pose.head)


def draw_cat(draw: ImageDraw.ImageDraw, pose: Pose) -> None:
    """Pointed ears and a long tail curving upwards."""
    head, hx, hy = pose.head, pose.hx, pose.hy
    for side in (-1, 1):
        base = hx + side * head * 0.55
        draw.polygon([(base - head * 0.4, hy - head * 0.6), (base + head * 0.4, hy - head * 0.6),
                      (base + side * head * 0.15, hy - head * 1.55)], fill=255)
    root = (pose.cx - pose.facing * pose.length * 0.9, pose.cy - pose.depth * 0.3)
    bend = (root[0] - pose.facing * pose.length * 0.55, root[1] - pose.depth * 0.3)
    tip = (root[0] - pose.facing * pose.length * 0.5, root[1] - pose.depth * 1.6)
    draw.line([root, bend, tip], fill=255, width=max(3, int(pose.depth * 0.3)), joint="curve")


def draw_dog(draw: ImageDraw.ImageDraw, pose: Pose) -> None:
    """A snout, floppy ears hanging beside the head and a short straight tail."""
    head, hx, hy = pose.head, pose.hx, pose.hy
    sx, sy = hx + pose.facing * head * 0.8, hy + head * 0.25
    fill_ellipse(draw, sx, sy, head * 0.6, head * 0.4)
    for side in (-1, 1):
        fill_ellipse(draw, hx + side * head * 0.8, hy + head * 0.15, head * 0.3, head * 0.75)
    root = (pose.cx - pose.facing * pose.length * 0.9, pose.cy - pose.depth * 0.3)
    tip = (root[0] - pose.facing * pose.length * 0.5, root[1] - pose.depth * 0.6)
    draw.line([root, tip], fill=255, width=max(3, int(pose.depth * 0.32)))


def draw_face(draw: ImageDraw.ImageDraw, pose: Pose) -> None:
    """Two eyes and a nose, drawn on a separate layer that darkens the coat."""
    eye, ahead = max(1.0, pose.head * 0.12), pose.hx + pose.facing * pose.head * 0.35
    for dx in (-pose.head * 0.3, pose.head * 0.3):
        fill_ellipse(draw, ahead + dx, pose.hy - pose.head * 0.15, eye, eye)
    fill_ellipse(draw, pose.hx + pose.facing * pose.head, pose.hy + pose.head * 0.2, eye, eye)


def draw_pet(rng: np.random.Generator, species: str, width: int, height: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """The pet's silhouette (bool (H, W)) and face markings ((H, W) float in [0, 1]), tilted."""
    pose = random_pose(rng, width, height)
    silhouette, face = Image.new("L", (width, height), 0), Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(silhouette)
    draw_body(draw, pose, rng)
    (draw_cat if species == "cat" else draw_dog)(draw, pose)
    draw_face(ImageDraw.Draw(face), pose)
    angle = rng.uniform(-20, 20)
    centre = (pose.cx, pose.cy)
    silhouette = silhouette.rotate(angle, resample=Image.Resampling.NEAREST, center=centre)
    face = face.rotate(angle, resample=Image.Resampling.BILINEAR, center=centre)
    return np.asarray(silhouette) > 127, np.asarray(face, dtype=np.float32) / 255


def pixels_around(mask: np.ndarray, band: int) -> np.ndarray:
    """How many pixels of `mask` lie in the (2 * band + 1)-pixel square around each pixel, with the
    edge rows and columns repeated outwards as PIL's rank filters do. Two running sums make it as
    fast for a 1,600 px photo's wide band as for a narrow one; `MaxFilter` is not."""
    side = 2 * band + 1
    padded = np.pad(mask.astype(np.int32), band, mode="edge")
    rows = np.cumsum(np.pad(padded, ((1, 0), (0, 0))), axis=0)
    rows = rows[side:] - rows[:-side]  # (H, W + 2 band): sums over `side` rows
    columns = np.cumsum(np.pad(rows, ((0, 0), (1, 0))), axis=1)
    return columns[:, side:] - columns[:, :-side]  # (H, W)


def trimap_from_mask(mask: np.ndarray, band: int) -> np.ndarray:
    """Trimap values from a boolean pet mask: pixels within `band` pixels of the outline, on
    either side, become BORDER, like the hand-drawn "not classified" band of the real trimaps."""
    around = pixels_around(mask, band)
    grown, shrunk = around > 0, around == (2 * band + 1) ** 2  # a square max and min filter
    trimap = np.where(mask, PET, BACKGROUND).astype(np.uint8)
    trimap[grown & ~shrunk] = BORDER
    return trimap


def render_photo(rng: np.random.Generator, breed: Breed, width: int, height: int, palette: list
                 ) -> tuple[Image.Image, np.ndarray]:
    """One synthetic photo (RGB) and its trimap ((H, W) uint8); the background's clutter borrows
    colours from `palette` (every breed's colours)."""
    scene = draw_background(rng, width, height, palette)
    mask, face = draw_pet(rng, breed.species, width, height)
    coat = draw_coat(rng, breed, width, height) * (1 - 0.85 * face[..., None])
    # A soft edge, as a camera would give, instead of a staircase outline.
    alpha = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(0.7))
    alpha = np.asarray(alpha, dtype=np.float32)[..., None] / 255
    photo = np.clip(scene * (1 - alpha) + coat * alpha, 0, 255).astype(np.uint8)
    band = max(1, round(min(width, height) / 80))
    return Image.fromarray(photo), trimap_from_mask(mask, band)


def split_line(name: str, ids: tuple[int, int, int]) -> str:
    """One line in the official format: `NAME CLASS_ID SPECIES BREED_ID`."""
    class_id, species_id, breed_id = ids
    return f"{name} {class_id} {species_id} {breed_id}\n"


def write_split_files(annotations: Path, trainval: list[str], test: list[str]) -> None:
    """trainval.txt, test.txt and list.txt, sorted by name like the real files (so the every-10th-line
    validation rule samples every breed); only list.txt has the real one's comment header."""
    (annotations / "trainval.txt").write_text("".join(sorted(trainval)))
    (annotations / "test.txt").write_text("".join(sorted(test)))
    (annotations / "list.txt").write_text(LIST_HEADER + "".join(sorted(trainval + test)))


def write_photo(root: Path, seed: int, shape: DatasetShape, photo: PlannedPhoto) -> None:
    """Draw one planned photo and save it with its trimap. Its generator is seeded by the set's
    seed and the photo's index alone, so neither the set's size nor the process drawing it matter."""
    rng = np.random.default_rng([seed, photo.index])
    width, height = shape.sizes.draw(rng)
    image, trimap = render_photo(rng, photo.breed, width, height, shape.palette())
    image.save(root / "images" / f"{photo.name}.jpg", quality=90)
    Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{photo.name}.png")


def drawn(draw, photos: list[PlannedPhoto], workers: int):
    """Draw every photo, in this process or in a pool of `workers`; yields as each one is saved."""
    if workers == 1:
        yield from map(draw, photos)
        return
    with multiprocessing.Pool(workers) as pool:
        yield from pool.imap_unordered(draw, photos, chunksize=4)


def write_synthetic(root: str | Path, shape: DatasetShape, seed: int = 0, workers: int = 1,
                    progress: bool = False) -> Path:
    """Write every photo of `shape`, its trimaps and split files under `root`; returns `root`.

    Args:
        root: folder to write into (created if missing; existing files are overwritten).
        seed: the same seed writes byte-identical files, whatever `workers` is.
        workers: processes drawing photos at once; 1 draws them in this process.
        progress: show a progress bar.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers (--workers) must be a whole number >= 1, got {workers!r}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    photos = shape.photos()
    drawing = drawn(functools.partial(write_photo, root, seed, shape), photos, workers)
    for _ in tqdm(drawing, total=len(photos), desc=f"drawing {root.name}", unit="photo", disable=not progress):
        pass
    ids = breed_ids(shape.breeds)
    lines = {"trainval": [], "test": []}
    for photo in photos:
        lines[photo.split].append(split_line(photo.name, ids[photo.breed.name]))
    write_split_files(root / "annotations", lines["trainval"], lines["test"])
    (root / "SYNTHETIC.md").write_text(MARKER_TEXT)
    return root


def make_synthetic(root: str | Path, n: int = 240, size: int = 160, seed: int = 0) -> Path:
    """Write the small default synthetic set: `n` photos, trimaps and split files under `root`.

    Args:
        root: folder to write into (created if missing; existing files are overwritten).
        n: number of photos; breeds take turns, every third photo of each breed goes to test.txt.
        size: typical side length; each photo's width and height vary by up to 20% around it.
        seed: the same seed writes byte-identical files.
    """
    return write_synthetic(root, small_shape(n, size), seed)
