"""Every relative link of the README and of docs/*.md points at a file that exists and, with a #anchor, at a
heading of that file (GitHub's anchor rules); the README links every docs page and every page links back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1)(?!\n\s*\n).)+?\1", re.DOTALL)  # never across a blank line
# [text](target) and ![alt](target); the text may span lines, the target holds no space (an optional "title")
_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^\s)>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(text: str) -> str:
    """The text outside fenced code blocks, inline code spans blanked (a link in code is no link)."""
    kept: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            kept.append("")
            continue
        kept.append("" if fenced else line)
    return _CODE_SPAN.sub("code", "\n".join(kept))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link markup reduced to its text, lowercase, punctuation other than '-' and
    '_' dropped, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text().splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> Iterator[str]:
    """The targets of the markdown links of a file, outside code."""
    for match in _LINK.finditer(_prose(path.read_text())):
        yield match.group(2)


def broken_links(path: Path) -> list[str]:
    """Each relative link of the file whose target file or #anchor does not exist, with the reason."""
    problems: list[str] = []
    for target in links(path):
        if not target:
            problems.append("empty link target")
            continue
        if _SCHEME.match(target):
            continue  # https:, mailto: ... are not checked here
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            problems.append(f"{target}: {file_part} does not exist")
            continue
        if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading with anchor #{anchor} in {destination.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    assert list(links(page)), f"{page.name}: no link found (is the parser broken?)"
    assert broken_links(page) == [], page.name


def test_a_broken_file_link_and_a_missing_anchor_are_found(tmp_path: Path) -> None:
    # GIVEN a page with one good link of each kind and one broken link of each kind
    (tmp_path / "other.md").write_text("# Other page\n\n## Routes: several stores\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Cloud Logging: per-file errors\n\n"
        "[ok](other.md#routes-several-stores) [ok](#cloud-logging-per-file-errors) [ok](other.md)\n"
        "[gone](missing.md) [no anchor](other.md#routes) [no\nanchor here](#page-1) [web](https://example.com/x#y)\n"
        "```\n[in a fence](nowhere.md)\n```\n`[in code](nowhere.md)`\n"
    )
    # WHEN its links are checked THEN exactly the three broken ones are reported
    assert broken_links(page) == [
        "missing.md: missing.md does not exist",
        "other.md#routes: no heading with anchor #routes in other.md",
        "#page-1: no heading with anchor #page-1 in page.md",
    ]


def test_anchors_follow_githubs_rules() -> None:
    assert slug("Cloud Logging: per-file errors") == "cloud-logging-per-file-errors"
    assert slug("healthcare_emulator") == "healthcare_emulator"
    assert slug("Run Google's published samples against it") == "run-googles-published-samples-against-it"
    assert slug("Local stack (`make run`)") == "local-stack-make-run"
    assert slug("Hostile input: peak memory per event") == "hostile-input-peak-memory-per-event"


def test_the_readme_links_every_docs_page_and_every_page_links_back() -> None:
    readme_targets = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme_targets, f"the README's reading list lacks docs/{page.name}"
        assert "../README.md" in set(links(page)), f"docs/{page.name} does not link back to the README"
