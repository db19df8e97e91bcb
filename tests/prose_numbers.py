"""Numbers in prose, and where a run printed or saved them: the reader behind test_notebook_numbers.

A number in prose is a figure with its unit (`86 s`, `3.7 minutes`, `16.8 img/s`, `11.5%`, `1.83x`,
`+1.6 SE`, `62 MiB`, `80.0 GFLOPs`), a value with two or more decimals (a Dice, a loss, a standard
error: `0.811`), or a time phrase (`about a minute`, `several minutes`, `under a minute or two`).
Code (fenced or inline), LaTeX and link targets are not prose: they are the method, not a claim
about a run. A number is supported when a value that rounds to it as written is printed in an
output or saved in results.json; a time phrase, when a printed time lies in the span it names.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

SECONDS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
           "h": 3600, "hour": 3600, "hours": 3600}
NUMBER = r"(?<![\w.$/])[+\-−±]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
UNITS = [  # (kind, pattern right after the number); the first that matches wins
    ("rate", r"\s?(?:img/s|images/s|images per second|photos per second)"),
    ("time", r"\s?(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b"),
    ("percent", r"\s?%"),
    ("ratio", r"(?:x|×)(?![\w\d])|\s(?:times)\b"),
    ("memory", r"\s?(?:[kMG]i?B)\b"),
    ("flops", r"\s?G?FLOPs?\b"),
    ("standard errors", r"\s?SE\b"),
]
COUNT_WORDS = {"a": (1, 1), "an": (1, 1), "one": (1, 1), "two": (2, 2), "three": (3, 3), "four": (4, 4),
               "five": (5, 5), "ten": (10, 10), "a few": (2, 5), "several": (3, 9), "a couple of": (2, 2),
               "half an": (0.5, 0.5)}
QUALIFIERS = {  # (factor on the low end, factor on the high end) of the span a phrase names
    "": (0.75, 4 / 3), "about": (0.75, 4 / 3), "around": (0.75, 4 / 3), "roughly": (0.75, 4 / 3), "some": (0.75, 4 / 3),
    "nearly": (0.75, 1), "almost": (0.75, 1), "under": (0, 1), "less than": (0, 1), "within": (0, 1), "at most": (0, 1),
    "up to": (0, 1), "well under": (0, 0.5), "over": (1, float("inf")), "more than": (1, float("inf")),
    "at least": (1, float("inf")),
}
# "a second" is an ordinal far more often than a duration, so the singular is no phrase unit.
TIME_PHRASE = re.compile(
    rf"\b(?P<qualifier>{'|'.join(sorted(filter(None, QUALIFIERS), key=len, reverse=True))})?\s*"
    rf"\b(?P<count>{'|'.join(sorted(COUNT_WORDS, key=len, reverse=True))})\s+(?P<unit>seconds|minutes?|hours?)"
    r"(?P<more>\s+or\s+(?:two|three))?\b", re.IGNORECASE)


@dataclass(frozen=True)
class ProseNumber:
    """One number as written in prose: `low`..`high` in its unit's base (seconds for times)."""

    text: str
    kind: str
    low: float
    high: float
    decimals: int
    where: str


def prose_of(markdown: str) -> str:
    """The markdown without what is not prose: code, LaTeX, HTML comments and link targets."""
    for pattern in (r"```.*?```", r"<!--.*?-->", r"\$\$.*?\$\$", r"\$[^$\n]+\$", r"`[^`\n]*`", r"\]\([^)]*\)"):
        markdown = re.sub(pattern, " ", markdown, flags=re.S)
    return markdown


def as_number(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-").replace("±", "").lstrip("+"))


def decimals_of(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def numbers_in(markdown: str, where: str) -> list[ProseNumber]:
    """Every number with a unit, value with two or more decimals, and time phrase in the prose."""
    prose, found = prose_of(markdown), []
    for match in TIME_PHRASE.finditer(prose):
        low, high = COUNT_WORDS[match["count"].lower()]
        if match["more"]:
            high = {"two": 2, "three": 3}[match["more"].split()[-1].lower()]
        unit = SECONDS[match["unit"].lower()]
        below, above = QUALIFIERS[(match["qualifier"] or "").lower()]
        found.append(ProseNumber(" ".join(match[0].split()), "time phrase", below * low * unit, above * high * unit, 0, where))
    for match in re.finditer(NUMBER, prose):
        rest, text = prose[match.end():], match[0]
        kind = next((kind for kind, pattern in UNITS if re.match(pattern, rest)), None)
        if kind is None and decimals_of(text) < 2:
            continue  # a count, a year, a setting such as 0.5: not a measured value
        value = as_number(text)
        if kind == "time":
            unit = re.match(UNITS[1][1], rest)[0].strip()
            value *= SECONDS[unit]
            text = f"{text} {unit}"
        found.append(ProseNumber(text, kind or "value", value, value, decimals_of(match[0]), where))
    return found


@dataclass
class Printed:
    """What a run showed: every number printed or saved, and the times among them in seconds.

    A time phrase is matched only against the times a notebook printed: a saved training time of
    another notebook would lend "several minutes" to any cell."""

    values: list[float]
    printed_seconds: list[float]
    saved_seconds: list[float]

    def __add__(self, other: "Printed") -> "Printed":
        return Printed(self.values + other.values, self.printed_seconds + other.printed_seconds,
                       self.saved_seconds + other.saved_seconds)

    def supports(self, number: ProseNumber) -> bool:
        if number.kind == "time phrase":
            return any(number.low <= seconds <= number.high for seconds in self.printed_seconds)
        tolerance = 0.5 * 10 ** -number.decimals + 1e-9
        if number.kind == "time":
            unit = SECONDS[number.text.split()[-1]]
            return any(abs(seconds - number.low) / unit <= tolerance
                       for seconds in self.printed_seconds + self.saved_seconds)
        scales = (1, 100) if number.kind == "percent" else (1,)
        return any(abs(abs(value) * scale - abs(number.low)) <= tolerance for value in self.values for scale in scales)


def printed_in(text: str) -> Printed:
    values, seconds = [], []
    for match in re.finditer(NUMBER, text):
        values.append(as_number(match[0]))
        unit = re.match(UNITS[1][1], text[match.end():])
        if unit and unit[0].strip() in SECONDS:
            seconds.append(values[-1] * SECONDS[unit[0].strip()])
    return Printed(values, seconds, [])


def output_text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(str(data[kind]) for kind in ("text/markdown", "text/plain", "text/html") if kind in data)


def printed_by_notebook(notebook) -> Printed:
    """The numbers in the stored outputs of a notebook's code cells."""
    texts = [output_text(output) for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    return printed_in("\n".join(texts))


LONGEST_SAVED_LIST = 10  # longer lists are per-photo scores: any Dice would find a match among hundreds


def saved_in(results: dict | list | float, key: str = "") -> Printed:
    """The numbers saved in results.json; those under a key ending in `seconds` are times."""
    if isinstance(results, dict):
        return sum((saved_in(value, name) for name, value in results.items()), Printed([], [], []))
    if isinstance(results, list):
        if len(results) > LONGEST_SAVED_LIST:
            return Printed([], [], [])
        return sum((saved_in(value, key) for value in results), Printed([], [], []))
    if isinstance(results, bool) or not isinstance(results, (int, float)):
        return Printed([], [], [])
    is_time = key.endswith("seconds") and not key.endswith("per_second")
    return Printed([float(results)], [], [float(results)] if is_time else [])


def markdown_numbers(notebook, name: str) -> list[ProseNumber]:
    return [number for index, cell in enumerate(notebook.cells) if cell.cell_type == "markdown"
            for number in numbers_in(cell.source, f"{name} cell {index}")]


def readme_section(readme: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split()[0]
    start = readme.index(heading + "\n")
    ends = [match.start() for match in re.finditer(rf"^#{{1,{len(level)}}} ", readme[start + len(heading):], re.M)]
    return readme[start:start + len(heading) + (ends[0] if ends else len(readme))]


def unsupported(numbers: list[ProseNumber], printed: Printed, allowed) -> list[ProseNumber]:
    """The numbers neither printed nor saved nor allowed (`allowed(number)` says whether it is)."""
    return [number for number in numbers if not printed.supports(number) and not allowed(number)]


def read_notebook(path: Path):
    return nbformat.read(path, as_version=4)


def read_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
