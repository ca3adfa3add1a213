"""The CSV layouts: `emotion,pixels[,Usage]`, plain or gzip, parsed a chunk of rows at a time
by NumPy's C parser, every row checked and a bad one named by its row number."""

from __future__ import annotations

import gzip
import io
import re
import warnings
from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.labels import NUM_CLASSES
from emotion.training.data.dataset import (CHUNK_ROWS, IMAGE_SIZE, PIXELS, SPLITS, UNASSIGNED,
                                           UNKNOWN_USAGE, shorten, Table)

def read_fer_csv(source: Path) -> Table:
    import pandas as pd

    data = source.read_bytes()
    if data[:2] == b"\x1f\x8b":  # the gzip magic number: trust the content, not the name
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise UserError(f"{source}: damaged gzip file ({err})") from None
    try:
        # Everything as text: labels and Usage are checked below with exact messages. Blank
        # lines are kept as empty rows so that row numbers match the file's line numbers.
        # pandas only warns when the first rows have more fields than the header (and drops
        # the extra ones): we make that an error too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                                skip_blank_lines=False, index_col=False,
                                encoding_errors="replace")
    except pd.errors.EmptyDataError:
        raise UserError(f"{source} is empty; expected the header emotion,pixels,Usage") from None
    except pd.errors.ParserError as err:
        raise UserError(f"{source}: not a valid CSV: {err}") from None
    except pd.errors.ParserWarning:
        raise UserError(f"{source}: not a valid CSV: {_first_long_line(data)}") from None
    del data

    columns = {name.strip().lower(): name for name in frame.columns}
    if "emotion" not in columns or "pixels" not in columns:
        found = ",".join(map(str, frame.columns))
        # A first line that starts with a class number is a data row: the header is missing.
        advice = (" (that is a data row: add the header line emotion,pixels,Usage at the top)"
                  if str(frame.columns[0]).strip().isdigit() else "")
        raise UserError(f"{source}: expected the header emotion,pixels,Usage (or emotion,pixels),"
                        f" found {shorten(found)!r}{advice}")
    has_usage = "usage" in columns
    emotion = frame[columns["emotion"]].str.strip()
    pixels = frame[columns["pixels"]].to_numpy(dtype=object)
    usage_text = frame[columns["usage"]].str.strip() if has_usage else None
    blank = ((frame == "").all(axis=1)).to_numpy()  # an empty line: nothing to report

    label_number = pd.to_numeric(emotion, errors="coerce").to_numpy(dtype=np.float64)
    label_ok = np.isin(label_number, np.arange(NUM_CLASSES))  # NaN, 2.5 or 9 -> False
    if has_usage:
        usage = usage_codes(usage_text)
        usage_ok = usage != UNKNOWN_USAGE
    else:
        usage = np.full(len(frame), UNASSIGNED, np.int64)
        usage_ok = np.ones(len(frame), bool)
    images, pixel_problems = _parse_pixels(pixels)

    # The slow, exact description is built only for the rows that failed a vectorized check.
    pixel_bad = np.zeros(len(frame), bool)
    pixel_bad[list(pixel_problems)] = True
    bad = ~blank & (~label_ok | pixel_bad | ~usage_ok)
    skipped = []
    for i in np.flatnonzero(bad):
        reasons = []
        if not label_ok[i]:
            reasons.append(_label_problem(emotion.iloc[i]))
        if pixel_bad[i]:
            reasons.append(pixel_problems[i])
        if not usage_ok[i]:
            reasons.append(_usage_problem(usage_text.iloc[i]))
        skipped.append((int(i) + 1, "; ".join(reasons)))

    keep = ~blank & ~bad
    return Table(images=images[keep].reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
                  labels=label_number[keep].astype(np.int64), usage=usage[keep],
                  rows=np.flatnonzero(keep) + 1, n_rows=len(frame),
                  layout="csv" if has_usage else "csv-no-usage", skipped=skipped)


def _first_long_line(data: bytes) -> str:
    """Which line has more fields than the header (only called once we know one does)."""
    lines = data.split(b"\n")
    expected = lines[0].count(b",") + 1
    for number, line in enumerate(lines[1:], start=2):
        if line.count(b",") + 1 > expected:
            return f"line {number} has {line.count(b',') + 1} fields, the header has {expected}"
    return "a row has more fields than the header"


def usage_codes(names) -> np.ndarray:
    """Split names (N,) -> int64 (N,) index into SPLITS, UNKNOWN_USAGE for anything else."""
    names = np.asarray(names, dtype=str)
    codes = np.full(len(names), UNKNOWN_USAGE, np.int64)
    for code, name in enumerate(SPLITS):
        codes[names == name] = code
    return codes


def _label_problem(text: str) -> str:
    if text == "":
        return "has no emotion label"
    try:
        float(text)
    except ValueError:
        return f"has a non-numeric emotion label {shorten(text)!r}"
    return f"has an unknown emotion label {shorten(text)} (expected 0..{NUM_CLASSES - 1})"


def _usage_problem(text: str) -> str:
    if text == "":
        return "has no Usage"
    return f"has an unknown Usage {shorten(text)!r} (expected {', '.join(SPLITS)})"


def _parse_pixels(texts: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Pixel strings (N,) -> (uint8 (N, 2304), {row index: problem}) without a per-row loop.

    Rows are parsed CHUNK_ROWS at a time by `_parse_rows`, all at once in C. Only when a chunk
    holds a malformed row (normally never) is it halved, and halved again, until the bad rows
    stand alone: about 2 * log2(CHUNK_ROWS) extra parses per bad row, and only those single
    rows go through `_check_row`, which finds the exact problem in plain Python.
    """
    images = np.zeros((len(texts), PIXELS), np.uint8)
    problems = {}

    def parse(lo, hi):
        values = _parse_rows(texts[lo:hi])
        if values is not None:
            images[lo:hi] = values
        elif hi - lo > 1:
            mid = (lo + hi) // 2
            parse(lo, mid)
            parse(mid, hi)
        else:
            problems[lo] = _check_row(texts[lo])

    for start in range(0, len(texts), CHUNK_ROWS):
        parse(start, min(start + CHUNK_ROWS, len(texts)))
    return images, problems


def _parse_rows(texts) -> np.ndarray | None:
    """uint8 (n, 2304) if every row holds exactly 2304 integers in 0..255, else None.

    We join the rows with a marker value, -1, after each one, and let NumPy's C parser read
    all the numbers in one call (sep=" " takes any run of whitespace as a separator). Every
    row had exactly 2304 numbers if and only if the markers sit at every 2305th value, and
    then the other values must lie in 0..255. Anything that is not a number stops the parser
    early (a ValueError, or a short result). int64, because smaller types wrap around
    silently: int16 reads "65600" as 64.
    """
    try:
        values = np.fromstring(" -1 ".join(texts) + " -1", dtype=np.int64, sep=" ")
    except ValueError:
        return None
    if values.size != len(texts) * (PIXELS + 1):
        return None
    values = values.reshape(len(texts), PIXELS + 1)
    pixels = values[:, :PIXELS]
    if (values[:, PIXELS] != -1).any() or pixels.min() < 0 or pixels.max() > 255:
        return None
    return pixels.astype(np.uint8)


def _check_row(text: str) -> str:
    """What is wrong with a pixel string that `_parse_rows` refused, in words."""
    tokens = text.split()
    if len(tokens) != PIXELS:
        return f"has {len(tokens)} pixel values, expected {PIXELS}"
    for token in tokens:
        if not re.fullmatch(r"[+-]?[0-9]+", token):
            return f"has a non-numeric pixel value {token!r}"
        if not 0 <= int(token) <= 255:
            return f"has pixel value {int(token)} outside 0..255"
    return "could not be parsed"  # not reached: a row passing the checks above parses
