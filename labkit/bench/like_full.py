"""The synthetic set shaped like the real Oxford-IIIT Pet, for rehearsing what the full dataset will
cost before downloading it (`python -m labkit synthetic --like-full`, `bench rehearsal`).

37 breeds (12 cats, 25 dogs), the official 3,680 trainval and 3,669 test photos (about 100 per
breed per split), photo sizes drawn like the real ones. `labkit.synthetic` draws it like any
other `DatasetShape`.
"""

import itertools
from dataclasses import dataclass

import numpy as np

from labkit.synthetic_shape import MIN_SIDE, Breed, DatasetShape, JitteredSizes

# The official release: 37 breeds (12 cats, 25 dogs), 3,680 photos in trainval.txt and 3,669 in test.txt.
OFFICIAL_CATS, OFFICIAL_DOGS = 12, 25
OFFICIAL_TRAINVAL, OFFICIAL_TEST = 3680, 3669


PATTERNS = {"stripes": "striped", "patches": "patched", "spots": "spotted", "plain": "plain"}
# Coats for the like-full breeds: base colour, then a dark and a light pattern colour.
CAT_COATS = {
    "ginger": ((205, 125, 60), (120, 60, 25), (240, 200, 150)),
    "silver": ((170, 170, 178), (60, 60, 68), (235, 235, 240)),
    "cream": ((235, 215, 180), (160, 120, 80), (90, 70, 60)),
}
DOG_COATS = {
    "sable": ((170, 120, 70), (60, 40, 25), (225, 190, 140)),
    "black": ((45, 40, 40), (110, 80, 60), (200, 180, 160)),
    "white": ((238, 236, 230), (30, 30, 30), (190, 150, 110)),
    "fawn": ((215, 170, 100), (150, 100, 60), (245, 225, 190)),
    "liver": ((120, 70, 50), (230, 220, 210), (70, 40, 30)),
    "blue": ((110, 120, 135), (50, 55, 65), (220, 220, 225)),
    "red": ((180, 80, 40), (90, 40, 20), (235, 180, 130)),
}


def coat_breeds(species: str, coats: dict, count: int) -> tuple[Breed, ...]:
    """The first `count` coat-and-pattern combinations as breeds, named the dataset's way:
    `Synthetic_Ginger_Striped` for a cat, `synthetic_sable_spotted` for a dog."""
    combinations = itertools.islice(itertools.product(coats.items(), PATTERNS.items()), count)
    breeds = []
    for (coat, colours), (pattern, word) in combinations:
        name = f"synthetic_{coat}_{word}"
        breeds.append(Breed(name.title() if species == "cat" else name, species, pattern, colours))
    return tuple(breeds)


LIKE_FULL_BREEDS = coat_breeds("cat", CAT_COATS, OFFICIAL_CATS) + coat_breeds("dog", DOG_COATS, OFFICIAL_DOGS)


@dataclass(frozen=True)
class RealisticSizes:
    """Photo sizes drawn like Oxford-IIIT Pet's: the long side, the ratio of long to short side and
    the orientation each follow the histogram of the 303 photos of the real sample
    (../shared/data/oxford-iiit-pet-sample): mostly 500 px long (500x375 and 500x333), a quarter
    300 px, a quarter portrait, about one in a hundred over 1,500 px."""

    long_sides: tuple[tuple[int, int, int], ...] = (  # (shortest, longest, photos of the sample)
        (200, 299, 8), (300, 300, 59), (301, 499, 31), (500, 500, 189), (501, 999, 13), (1500, 1600, 3))
    aspect_ratios: tuple[tuple[float, float, int], ...] = (  # long side / short side: (lowest, highest, photos)
        (1.0, 1.0, 6), (1.0, 1.33, 61), (4 / 3, 4 / 3, 81), (1.34, 1.49, 24), (1.5, 1.5, 105), (1.51, 2.6, 26))
    portrait_share: float = 77 / 297  # of the photos that are not square

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        low, high, _ = pick(rng, self.long_sides)
        long_side = int(rng.integers(low, high + 1))
        low, high, _ = pick(rng, self.aspect_ratios)
        short_side = max(MIN_SIDE, round(long_side / rng.uniform(low, high)))
        portrait = rng.random() < self.portrait_share
        return (short_side, long_side) if portrait else (long_side, short_side)


def pick(rng: np.random.Generator, bins: tuple[tuple, ...]) -> tuple:
    """One bin, drawn with probability proportional to its last field (a count)."""
    weights = np.array([bin_[-1] for bin_ in bins], dtype=float)
    return bins[rng.choice(len(bins), p=weights / weights.sum())]


def like_full_shape(n: int | None = None, size: int | None = None) -> DatasetShape:
    """A set shaped like Oxford-IIIT Pet: 37 breeds (12 cats), 3,680 trainval and 3,669 test
    photos (about 100 per breed per split), sizes drawn like the real photos'.

    Args:
        n: photos in all; the two splits keep the official proportion (default 7,349).
        size: draw every side within 20% of this instead of the real size distribution.
    """
    count = OFFICIAL_TRAINVAL + OFFICIAL_TEST if n is None else n
    if count < 2:
        raise ValueError(f"--like-full needs --count >= 2 (one trainval and one test photo), got {count}")
    if size is not None and size < MIN_SIDE:
        raise ValueError(f"--size must be >= {MIN_SIDE} pixels to draw a pet, got {size}")
    trainval = round(count * OFFICIAL_TRAINVAL / (OFFICIAL_TRAINVAL + OFFICIAL_TEST))
    counts = photos_per_breed(trainval, count - trainval, len(LIKE_FULL_BREEDS))
    sizes = RealisticSizes() if size is None else JitteredSizes(size)
    return DatasetShape(LIKE_FULL_BREEDS, counts, test_every=2, sizes=sizes)


def photos_per_breed(trainval: int, test: int, breeds: int) -> tuple[int, ...]:
    """Photos per breed such that, with every second photo of a breed in test.txt, the splits hold
    exactly `trainval` and `test` photos: test photos are shared out evenly, each breed gets as
    many trainval photos, and the last `trainval - test` breeds one more."""
    extra = trainval - test
    if not 0 <= extra <= breeds:
        raise ValueError(f"cannot split {trainval} trainval and {test} test photos over {breeds} breeds with "
                         "every second photo in test; keep the two splits within one photo per breed")
    tests = [test // breeds + (index < test % breeds) for index in range(breeds)]
    return tuple(2 * tests[index] + (index >= breeds - extra) for index in range(breeds))
