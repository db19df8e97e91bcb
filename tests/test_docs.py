"""The README and the pages under docs/: every relative link points at a file that exists, and every
`#fragment` at a heading of its target, as GitHub renders them."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets and # are not markdown."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores
    kept), spaces turned into hyphens."""
    heading = re.sub(r"`|\*\*|\*", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, repeated headings numbered as GitHub numbers them (-1, -2, ...)."""
    seen, found = {}, set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            base = slug(match[1])
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not files here


def broken(page: Path, target: str) -> str | None:
    path, _, fragment = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    if not resolved.exists():
        return f"{target}: no {resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else resolved}"
    if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
        return f"{target}: no heading #{fragment} in {resolved.name}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert [problem for target in relative_links(page) if (problem := broken(page, target))] == []


def test_the_readme_links_every_page_under_docs():
    linked = {(REPO / target.partition("#")[0]).resolve() for target in relative_links(REPO / "README.md")}
    assert (REPO / "docs" / "README.md").resolve() in linked
    for page in PAGES[1:]:
        assert page.resolve() in linked or page.name in (REPO / "docs" / "README.md").read_text(), page.name


def test_a_broken_link_and_a_missing_heading_are_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n## How `it` works\n\n```\n# not a heading\n```\n")
    assert broken(page, "#how-it-works") is None and broken(page, "#a-title") is None
    assert broken(page, "#not-a-heading") and broken(page, "other.md") and broken(page, "page.md#nowhere")
