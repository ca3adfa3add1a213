"""Run the chapters of the learning path and refresh their figures in docs/learn/figures.

    python -m docs.learn.make_figures            # every chapter (FER2013 needed for 08 and 13)
    python -m docs.learn.make_figures --cheap    # all but the training chapter

Run from the repository root. A chapter is its ```python blocks, run in order in one
namespace, as tests/test_learn.py and a notebook run them.
"""

import argparse
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHAPTERS = sorted(HERE.glob("[0-9][0-9]-*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
# The chapter that trains on FER2013: minutes, and its figures depend on the data found.
EXPENSIVE = {"08-watch-it-learn.md"}


def python_blocks(chapter):
    """[(line number, code)] of a chapter's python blocks, in order."""
    text = Path(chapter).read_text()
    return [(text[:m.start(1)].count("\n") + 1, m.group(1)) for m in PYTHON_BLOCK.finditer(text)]


def run_chapter(chapter):
    """Run every block of `chapter` in one fresh namespace; returns the namespace. A failing
    block raises with the chapter, the block and its line named."""
    chapter = Path(chapter)
    namespace = {"__name__": f"learn_{chapter.stem.replace('-', '_')}"}
    for i, (line, code) in enumerate(python_blocks(chapter), 1):
        try:
            exec(compile(code, f"{chapter.name}, block {i} (line {line})", "exec"), namespace)
        except Exception as err:
            raise RuntimeError(f"{chapter.name}: python block {i} at line {line} failed: "
                               f"{type(err).__name__}: {err}") from err
    return namespace


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.learn.make_figures",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cheap", action="store_true",
                        help="skip the chapter that trains on FER2013")
    parser.add_argument("--out", default=str(HERE / "figures"),
                        help="folder for NAME.png and NAME.npz (default: docs/learn/figures)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.is_dir():
        print(f"make_figures: error: no folder {out}", file=sys.stderr)
        return 2
    os.environ["LEARN_FIGURES"] = str(out)
    try:
        for chapter in CHAPTERS:
            if args.cheap and chapter.name in EXPENSIVE:
                continue
            print(f"running {chapter.name}", flush=True)
            run_chapter(chapter)
    except RuntimeError as err:
        print(f"make_figures: error: {err}", file=sys.stderr)
        return 1
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
