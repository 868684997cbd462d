"""The documents follow the code: the README's demo study as shipped, every study-file key
(docs/study-files.md), every Parquet column as gzsl/results.py writes it (docs/results.md), and a
README a user reads through (at most 300 lines and 2,000 words, no prose line over 200 characters,
its links to files that exist)."""

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
