"""The README's benchmark table is the one bench/table.py generates from bench/results."""

from __future__ import annotations

import pytest

from bench.table import END, README, START, spliced, table

pytestmark = pytest.mark.unit


def test_readme_benchmark_table_matches_the_results() -> None:
    text = README.read_text()
    assert START in text
    assert END in text
    assert spliced(text, table()) == text, "run: python bench/table.py --write"
