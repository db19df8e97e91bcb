"""The split files: which photos are in train, valid, trainval and test, read line by line."""

from dataclasses import dataclass
from pathlib import Path

from labkit.data.roots import FIX_HINT, resolve_root

SPLITS = ("train", "valid", "trainval", "test")
# trainval.txt is cut into FOLDS folds by line (line i belongs to fold i % FOLDS); the valid split is
# fold 0, every 10th line from the first, as segmentation_models_pytorch does, so numbers compare.
# Cross-validation (`bench quality --folds K`) holds out each fold of K in turn.
FOLDS = 10
SPECIES = {"1": "cat", "2": "dog"}
LINE_FORMAT = "NAME CLASS_ID SPECIES BREED_ID"


@dataclass(frozen=True)
class Sample:
    """One listed photo: its identity and where its photo and trimap live."""

    name: str  # "Abyssinian_1"
    breed: str  # "Abyssinian"
    species: str  # "cat" | "dog"
    class_id: int  # 1..37
    image_path: Path
    trimap_path: Path


def split_file_path(root: Path, split: str) -> Path:
    """The annotations file that lists a split (train and valid both come from trainval.txt)."""
    return root / "annotations" / ("test.txt" if split == "test" else "trainval.txt")


def in_valid_fold(position: int, valid_fold: int = 0, folds: int = FOLDS) -> bool:
    """Whether the photo on line `position` (0-based) of trainval.txt is in the held-out fold."""
    return position % folds == valid_fold


def check_fold(valid_fold: int, folds: int) -> None:
    if not (isinstance(folds, int) and folds >= 2 and isinstance(valid_fold, int) and 0 <= valid_fold < folds):
        raise ValueError(f"valid_fold must be one of 0..folds-1 and folds at least 2, got valid_fold={valid_fold!r}, "
                         f"folds={folds!r} (--set valid_fold=... / --folds K)")


def read_split(root: str | Path | None, split: str, valid_fold: int = 0, folds: int = FOLDS) -> list[Sample]:
    """The samples of one split, in file order.

    valid is one fold of trainval.txt (by default fold 0 of 10: every 10th line from the first, as
    segmentation_models_pytorch does) and train is the rest, so the official test split stays
    untouched for the final report.

    Raises:
        ValueError: the split file lists no photos, has a malformed line, or lists a photo twice
            (the copy could land in train and valid both and inflate validation Dice); or a photo
            is listed in both trainval.txt and test.txt (it would be trained on, then scored as
            unseen).
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
    root = resolve_root(root)
    split_file = split_file_path(root, split)
    if not split_file.is_file():
        raise FileNotFoundError(f"Split file {split_file} is missing. To fix it, {FIX_HINT}.")
    check_fold(valid_fold, folds)
    samples = read_split_file(root, split_file)
    refuse_photos_in_trainval_and_test(root)
    if split in ("train", "valid"):
        return [sample for position, sample in enumerate(samples)
                if in_valid_fold(position, valid_fold, folds) == (split == "valid")]
    return samples


def read_split_file(root: Path, split_file: Path) -> list[Sample]:
    """Every photo a split file lists, refusing malformed lines, repeats and an empty list."""
    samples, first_line = [], {}
    for line_number, line in photo_lines(split_file):
        sample = parse_line(root, line, f"{split_file}, line {line_number}")
        if sample.name in first_line:
            raise ValueError(
                f"{split_file} lists {sample.name} twice, on lines {first_line[sample.name]} and "
                f"{line_number}. Delete one of the two lines."
            )
        first_line[sample.name] = line_number
        samples.append(sample)
    if not samples:
        raise ValueError(
            f"{split_file} lists no photos. Add one `{LINE_FORMAT}` line per photo, or re-download "
            "the annotations with `python -m labkit download`."
        )
    return samples


def refuse_photos_in_trainval_and_test(root: Path) -> None:
    """Refuse a photo that trainval.txt and test.txt both list, naming it and its two lines.

    Either file may be missing (only the split being read is required), and then nothing is checked.
    """
    listed = {}
    for split in ("trainval", "test"):
        split_file = split_file_path(root, split)
        if not split_file.is_file():
            return
        listed[split] = {line.split()[0]: number for number, line in photo_lines(split_file)}
    shared = [name for name in listed["test"] if name in listed["trainval"]]
    if shared:
        name = shared[0]
        raise ValueError(
            f"{name} is listed in both {split_file_path(root, 'trainval')} (line {listed['trainval'][name]}) and "
            f"{split_file_path(root, 'test')} (line {listed['test'][name]}), so it would be trained on and then "
            f"scored as an unseen photo ({len(shared)} photo(s) in both). Delete it from one of the two files."
        )


def photo_lines(split_file: Path):
    """(line number, line) for each line of a split file that lists a photo: blank lines and
    `#` comments are skipped."""
    for line_number, line in enumerate(split_file.read_text().splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            yield line_number, line


def parse_line(root: Path, line: str, where: str) -> Sample:
    """One `NAME CLASS_ID SPECIES BREED_ID` line as a Sample; `where` names it in errors."""
    fields = line.split()
    if len(fields) < 3 or not fields[1].isdigit() or fields[2] not in SPECIES:
        raise ValueError(
            f"{where}: expected `{LINE_FORMAT}`, got {line!r}. Re-download the annotations or fix the line."
        )
    name = fields[0]
    return Sample(
        name=name,
        breed=name.rsplit("_", 1)[0],
        species=SPECIES[fields[2]],
        class_id=int(fields[1]),
        image_path=root / "images" / f"{name}.jpg",
        trimap_path=root / "annotations" / "trimaps" / f"{name}.png",
    )


def evenly_spaced(items: list, count: int) -> list:
    """`count` items spread evenly through `items`, the first and last left out.

    Figures show photos picked this way rather than the split's first lines, so they do not
    depend on which photo happens to sort first, and a split sorted by breed shows every breed.
    All items are returned when there are no more than `count`; with too few to leave the ends
    out, the ends are kept.
    """
    items = list(items)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a whole number >= 1, got {count!r}")
    if len(items) <= count:
        return items
    if len(items) < count + 2:  # spread over every position, ends included; steps stay above 1
        return [items[round(index * (len(items) - 1) / max(count - 1, 1))] for index in range(count)]
    step = (len(items) - 1) / (count + 1)  # at least 1, so no item is picked twice
    return [items[round(step * (index + 1))] for index in range(count)]
