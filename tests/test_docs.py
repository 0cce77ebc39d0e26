"""Every ``docs/...`` path the code and the docs cite exists, every ``§N`` it cites is a heading of
that page, and nothing points outside the repository (``care_method.md``, ``../shared``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    *sorted(
        p
        for d in ("care_core", "components", "pipelines", "bench", "tests")
        for p in (ROOT / d).rglob("*.py")
    ),
    *sorted((ROOT / "docs").glob("*.md")),
    *[ROOT / p for p in ("README.md", "bench/README.md", "pipelines/README.md") if (ROOT / p).is_file()],
]
SOURCES.remove(Path(__file__).resolve())  # this file names the patterns it looks for
CITATION = re.compile(r"(?<![\w/.-])(docs/[\w./-]*[\w])(?:`*\s*§\s*(\d+)(?:\s*[-–]\s*(\d+))?)?")
OUTSIDE = re.compile(r"(?<![\w/.\"-])(care_method\.md|(?<!docs/)\binterfaces\.md|\.\./shared/|/work/shared/)")


def citations(text: str) -> list[tuple[str, list[int]]]:
    """(path, cited section numbers) for each ``docs/...`` citation in ``text``."""
    out = []
    for match in CITATION.finditer(text):
        path, first, last = match.groups()
        sections = list(range(int(first), int(last or first) + 1)) if first else []
        out.append((path.rstrip("."), sections))
    return out


def sections_of(page: Path) -> set[int]:
    return {int(n) for n in re.findall(r"^#+\s+(\d+)\.", page.read_text(), flags=re.M)}


def test_citation_parser():
    text = "see docs/method.md §2-4, ``docs/interfaces.md`` §1 and docs/results.md. Not x/docs/y.md."
    assert citations(text) == [
        ("docs/method.md", [2, 3, 4]),
        ("docs/interfaces.md", [1]),
        ("docs/results.md", []),
    ]
    assert OUTSIDE.search("(care_method.md §3)") and OUTSIDE.search("see ../shared/docs/x.md")
    assert not OUTSIDE.search("docs/interfaces.md §2") and not OUTSIDE.search("docs/method.md")


def test_sources_were_found():
    assert len(SOURCES) > 100 and ROOT / "docs" / "method.md" in SOURCES


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_docs_exist(source: Path):
    text = source.read_text(encoding="utf-8")
    problems = [f"{m.group(1)!r} is not in the repository" for m in OUTSIDE.finditer(text)]
    for path, sections in citations(text):
        target = ROOT / path
        if not target.exists():
            problems.append(f"{path} does not exist")
        elif sections and target.suffix == ".md":
            missing = sorted(set(sections) - sections_of(target))
            if missing:
                problems.append(f"{path} has no section {missing}")
    assert not problems, f"{source.relative_to(ROOT)}: " + "; ".join(problems)
