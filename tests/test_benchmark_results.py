"""benchmarks/RESULTS.md and the JSON files it cites stay where a reader looks for them, and
name each result by date and machine, never by an ordinal of the work (../shared/STYLE.md)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "RESULTS.md"

# An ordinal of the work (a numbered session) can be resolved by nobody who was not there; a
# date and a machine can.
ORDINAL = re.compile(r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|"
                     r"eleventh|twelfth|thirteenth) session", re.IGNORECASE)


def test_the_json_results_are_in_their_own_folder():
    assert sorted(p.name for p in BENCHMARKS.glob("*.json")) == []
    assert list((BENCHMARKS / "results").glob("*.json"))


def test_results_md_names_exactly_the_json_files_there_are():
    text = RESULTS.read_text()
    stored = {p.name for p in (BENCHMARKS / "results").glob("*.json")}
    cited = set(re.findall(r"[\w-]+\.json", text))
    paths = re.findall(r"benchmarks/[\w/.-]+\.json", text)
    assert all(p.startswith("benchmarks/results/") for p in paths), paths
    # Each stored file is described, and each file named is one that exists.
    assert stored - cited == set()
    assert cited - stored == set()


def test_results_md_opens_with_the_current_figures():
    headings = [line for line in RESULTS.read_text().splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Machines", "## Current figures"]


def test_no_result_is_named_by_an_ordinal_of_the_work():
    files = [RESULTS, ROOT / "README.md", *BENCHMARKS.glob("*.py"), *BENCHMARKS.glob("*.sh"),
             *(ROOT / "docs").glob("*.md")]
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1) if ORDINAL.search(line)]
    assert found == []
