"""What a synthetic set looks like before a pixel is drawn: its breeds, how many photos each split
gets, and how big the photos are.

The small default set is built here (six breeds, a few hundred photos of about 160 px: what the
tests and `make lab` use). The maintainers' set shaped like the real Oxford-IIIT Pet, for
rehearsing the full dataset's cost, is `labkit.bench.like_full`. `labkit.synthetic` draws and
writes either.
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np

MIN_SIDE = 32  # smaller photos leave no room to draw a pet


@dataclass(frozen=True)
class Breed:
    name: str
    species: str  # "cat" or "dog"
    pattern: str  # "stripes", "patches", "spots" or "plain"
    colours: tuple[tuple[int, int, int], ...]  # base coat colour first, then pattern colours


# Capitalised names are cats, lower-case names dogs: the real dataset's convention.
BREEDS = (
    Breed("Synthetic_Tabby", "cat", "stripes", ((196, 140, 80), (70, 45, 25))),
    Breed("Synthetic_Calico", "cat", "patches", ((235, 230, 220), (205, 120, 50), (40, 35, 35))),
    Breed("Synthetic_Smoky", "cat", "plain", ((120, 120, 128), (80, 80, 88))),
    Breed("synthetic_dalmatian", "dog", "spots", ((238, 236, 230), (30, 30, 30))),
    Breed("synthetic_brindle", "dog", "stripes", ((150, 100, 60), (50, 35, 25))),
    Breed("synthetic_retriever", "dog", "plain", ((215, 170, 100), (180, 130, 70))),
)


def breed_ids(breeds: tuple[Breed, ...] = BREEDS) -> dict[str, tuple[int, int, int]]:
    """CLASS_ID, SPECIES and BREED_ID per breed, numbered like the real list.txt: class ids by
    case-insensitive name order, breed ids by the same order within each species."""
    ordered = sorted(breeds, key=lambda breed: breed.name.lower())
    ids, per_species = {}, {"cat": 0, "dog": 0}
    for class_id, breed in enumerate(ordered, start=1):
        per_species[breed.species] += 1
        species_id = 1 if breed.species == "cat" else 2
        ids[breed.name] = (class_id, species_id, per_species[breed.species])
    return ids


class PhotoSizes(Protocol):
    """How a shape draws each photo's (width, height)."""

    def draw(self, rng: np.random.Generator) -> tuple[int, int]: ...


@dataclass(frozen=True)
class JitteredSizes:
    """Width and height each within 20% of one typical side: the small default set's photos."""

    size: int = 160

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        width, height = (int(self.size * rng.uniform(0.8, 1.2)) for _ in range(2))
        return width, height


@dataclass(frozen=True)
class PlannedPhoto:
    index: int  # position in drawing order; with the seed, it seeds the photo's generator
    name: str  # "Synthetic_Tabby_3"
    breed: Breed
    split: str  # "trainval" or "test"


@dataclass(frozen=True)
class DatasetShape:
    """Which breeds, how many photos of each, which of them are test photos, and their sizes.

    Breeds take turns, so photo `index` of the set is photo `index // len(breeds)` of its breed
    while every breed still has photos; photo k (0-based) of a breed is listed in test.txt when
    `k % test_every == test_every - 1`, so every breed is in every split.
    """

    breeds: tuple[Breed, ...]
    photos_per_breed: tuple[int, ...]
    test_every: int
    sizes: PhotoSizes

    def __post_init__(self) -> None:
        if len(self.photos_per_breed) != len(self.breeds):
            raise ValueError(f"photos_per_breed has {len(self.photos_per_breed)} counts for {len(self.breeds)} "
                             "breeds; give one count per breed")
        if self.test_every < 2:
            raise ValueError(f"test_every must be >= 2 (1 would leave trainval empty), got {self.test_every}")

    def photos(self) -> list[PlannedPhoto]:
        """Every photo of the set in drawing order, with its name and split."""
        planned = []
        for k in range(max(self.photos_per_breed, default=0)):
            for breed, count in zip(self.breeds, self.photos_per_breed):
                if k < count:
                    split = "test" if k % self.test_every == self.test_every - 1 else "trainval"
                    planned.append(PlannedPhoto(len(planned), f"{breed.name}_{k + 1}", breed, split))
        return planned

    def split_counts(self) -> dict[str, int]:
        """Photos listed in trainval.txt and in test.txt."""
        test = sum(count // self.test_every for count in self.photos_per_breed)
        return {"trainval": sum(self.photos_per_breed) - test, "test": test}

    def palette(self) -> list[tuple[int, int, int]]:
        """Every breed colour: background clutter borrows them, so colour alone can't find the pet."""
        return [colour for breed in self.breeds for colour in breed.colours]


def small_shape(n: int = 240, size: int = 160) -> DatasetShape:
    """The default synthetic set: `n` photos of the six BREEDS, every third photo of each breed
    in test.txt, sides within 20% of `size`."""
    if n < 1:
        raise ValueError(f"make_synthetic needs n >= 1 photos (--count), got n={n}")
    if size < MIN_SIDE:
        raise ValueError(f"make_synthetic needs size >= {MIN_SIDE} pixels (--size) to draw a pet, got size={size}")
    counts = tuple(n // len(BREEDS) + (index < n % len(BREEDS)) for index in range(len(BREEDS)))
    return DatasetShape(BREEDS, counts, test_every=3, sizes=JitteredSizes(size))
