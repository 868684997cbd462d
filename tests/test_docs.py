"""The documents follow the code: the README's demo study as shipped, every study-file key
(docs/study-files.md), every Parquet column as gzsl/results.py writes it (docs/results.md), and a
README a user reads through (at most 300 lines and 2,000 words, no prose line over 200 characters,
its links to files that exist, and to headings that exist in them)."""

import re
from pathlib import Path

import pytest

from gzsl import hyperparams
from gzsl.results import TABLES, schema
from gzsl.studyfile import _SECTIONS, shipped_folder

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
STUDY_FILES = (ROOT / "docs" / "study-files.md").read_text()
RESULTS = (ROOT / "docs" / "results.md").read_text()


def test_the_readme_shows_the_demo_study_as_shipped():
    shown = re.search(r"```toml\n(.*?)```", README, re.S).group(1)
    assert shown == (shipped_folder() / "demo.toml").read_text()


def test_the_readme_describes_every_study_file_key():
    rows = set(re.findall(r"^\| `\[(\w+)\] (\w+)` \|", STUDY_FILES, re.M))
    assert rows == {(section, key) for section, keys in _SECTIONS.items() for key in keys} | {("space", n) for n in hyperparams.names()}


@pytest.mark.parametrize("table", list(TABLES))
def test_the_readme_lists_every_parquet_column(table):
    start = RESULTS.index(f"`{table}.parquet`, one row")
    lines = RESULTS[start:].split("\n\n", 2)[1].splitlines()  # the table after the heading line
    first_cells = [line.split("|")[1] for line in lines[2:]]
    documented = [name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)]
    assert sorted(documented) == sorted(schema(table).names)


def test_the_readme_is_a_guide_whose_links_resolve():
    assert len(README.splitlines()) <= 300 and len(README.split()) <= 2000
    prose = re.sub(r"```.*?```", "", README, flags=re.S)  # code blocks may hold long commands
    assert [line[:60] for line in prose.splitlines() if len(line) > 200] == []
    for doc in ("README.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))):
        text = (ROOT / doc).read_text()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (ROOT / doc).parent.joinpath(target).exists(), f"{doc} links to {target}, which does not exist"
    assert "shared/docs" not in README  # a clone has no ../shared: the method is docs/method.md


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_link_to_a_heading_finds_it():
    """A section renamed or cut (docs/benchmarks.md lost twelve of them once) breaks no link quietly."""
    broken = []
    for doc in (ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "cluster" / "README.md"):
        for target, anchor in re.findall(r"\]\(([^)#:]*)#([^)]+)\)", doc.read_text()):
            path = doc.parent.joinpath(target) if target else doc
            if path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{doc.relative_to(ROOT)} -> {target}#{anchor}")
    assert broken == []
