"""The README's references follow the code: the demo study as shipped, every study-file key, and
every Parquet column as gzsl/results.py writes it."""

import re
from pathlib import Path

import pytest

from gzsl.results import TABLES
from gzsl.studies import _SECTIONS, shipped_folder

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_readme_shows_the_demo_study_as_shipped():
    shown = re.search(r"```toml\n(.*?)```", README, re.S).group(1)
    assert shown == (shipped_folder() / "demo.toml").read_text()


def test_the_readme_describes_every_study_file_key():
    rows = set(re.findall(r"^\| `\[(\w+)\] (\w+)` \|", README, re.M))
    assert rows == {(section, key) for section, keys in _SECTIONS.items() for key in keys}


@pytest.mark.parametrize("table", list(TABLES))
def test_the_readme_lists_every_parquet_column(table):
    start = README.index(f"`{table}.parquet`, one row")
    lines = README[start:].split("\n\n", 2)[1].splitlines()  # the table after the heading line
    first_cells = [line.split("|")[1] for line in lines[2:]]
    documented = [name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)]
    assert sorted(documented) == sorted(TABLES[table].names)
