"""Reading back a dataset written to disk: the lines of its split files, and a hash of every file."""

import hashlib
from pathlib import Path


def listed_lines(root: Path, split: str) -> list[list[str]]:
    text = (root / "annotations" / f"{split}.txt").read_text()
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
