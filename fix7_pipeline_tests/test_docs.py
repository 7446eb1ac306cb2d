"""The README and the pages under docs/: every relative link lands on a file and a heading that exist, every page is
in the README's index, the README stays short, and the CI page shows the very examples the schema test validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
README_MAX_LINES = 300  # issue 23: a README of about 250 lines, at most 300


def prose_lines(text: str):
    """The lines outside fenced code blocks, with inline code spans blanked (a link shown as code is no link)."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield re.sub(r"`[^`]*`", "``", line)


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub makes for a Markdown page: lower case, punctuation dropped, spaces to hyphens,
    a repeated one numbered."""
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6} +(.*?) *#*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).replace("`", "").replace("*", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        seen.setdefault(slug if n == 0 else f"{slug}-{n}", 1)
    return set(seen)


def broken_links(page: Path) -> list[str]:
    broken = []
    for line in prose_lines(page.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{target}: no such file {dest}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{target}: {dest.name} has no heading #{anchor}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_caught(tmp_path):
    (tmp_path / "there.md").write_text("# A page: `with` code\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-page-with-code) [ok](there.md#twice-1) [ok](#here) `[code](nowhere.md)`\n\n"
                    "# Here\n\n```\n[fenced](nowhere.md)\n```\n[gone](missing.md) [no heading](there.md#nowhere)\n")
    assert broken_links(page) == [f"missing.md: no such file {tmp_path / 'missing.md'}",
                                  "there.md#nowhere: there.md has no heading #nowhere"]


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def test_every_docs_page_is_in_the_readmes_index():
    readme = (ROOT / "README.md").read_text()
    index = readme[readme.index("## Documentation"):]
    linked = {Path(t.partition("#")[0]).name for line in prose_lines(index) for t in LINK.findall(line)}
    assert [p.name for p in DOCS if p.name not in linked] == []


def test_the_ci_page_shows_the_examples_the_schema_test_validates():
    """test_installed_tool validates docs/ci/*.example.yml; the CI page shows those files, not a copy that drifted."""
    page = (ROOT / "docs" / "CI.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.S)
    for example in ("github-workflow.example.yml", "gitlab-ci.example.yml"):
        assert (ROOT / "docs" / "ci" / example).read_text() in blocks, example
