"""Nothing lost: each file's result is a Parquet part of its own, written the moment it
arrives, and the final table is joined from the parts.

    OUT.parts/manifest.json        the settings and columns the parts were made with
    OUT.parts/KEY.parquet          one file's rows (KEY: emotion/batch/media.py)
    OUT.parts/KEY.failed.parquet   one file's error row (done again on --resume)

Every part is written under a temporary name and then renamed (os.replace), so a part that
exists is whole: a run killed at any instant leaves whole parts and at most a temporary
file, which --resume deletes. --resume skips the files with a part and retries those with a
failed one; the parts of files no longer among the inputs stay in the folder but are not
joined. The join writes --out (and --csv) the same way, under a temporary name first, with
the rows sorted by (file, frame, track_id), so the table does not depend on the order in
which the workers finished. The join reads one part at a time: memory holds one file's rows.
CSV is text, so there the `file_bytes` of a name that is not UTF-8 (emotion/batch/analyze.py)
is percent-escaped (urllib.parse.unquote_to_bytes gives the bytes back).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import quote_from_bytes

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from emotion.errors import UserError

MANIFEST = "manifest.json"
FORMAT = 1  # the manifest's format: a change in how parts are written bumps it


def parts_folder(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


class PartStore:
    """The parts folder of one `emotion batch` run (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest = None  # written with the first part (no empty folder if nothing runs)

    @classmethod
    def holds_run(cls, out) -> bool:
        """Whether the parts folder of `out` holds a run that --resume can continue: its
        manifest or a part. (A folder without either is what a run killed as it made the
        folder leaves: there is nothing in it to resume.)"""
        folder = parts_folder(out)
        return folder.is_dir() and ((folder / MANIFEST).exists()
                                    or any(folder.glob("*.parquet")))

    @classmethod
    def open(cls, out, csv, manifest: dict, resume: bool, overwrite: bool = False) -> "PartStore":
        """The parts folder beside `out`, new or (with resume) continued; UserError when a
        run would mix its results with another run's or write over them. With `overwrite`
        (and no resume), the parts of an earlier run are removed first. The command has
        checked --out and --csv (outputs.refuse_existing) before."""
        store = cls(parts_folder(out))
        if os.path.lexists(store.folder) and not store.folder.is_dir():
            raise UserError(f"{store.folder} is a file, not a parts folder: move it away")
        manifest = {"format": FORMAT, **manifest}
        path = store.folder / MANIFEST
        fresh = not cls.holds_run(out)
        if not resume and not fresh:
            if not overwrite:
                raise UserError(f"the parts folder {store.folder} already exists: pass --resume "
                                f"to continue that run (the files already done are skipped), "
                                f"--overwrite to replace it, or choose another --out")
            store.remove_parts()
            fresh = True
        if store.folder.is_dir() and not fresh:
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                raise UserError(f"{store.folder} has no readable {MANIFEST}: it is not an "
                                f"`emotion batch` parts folder; move it away") from None
            if old != manifest:
                changed = sorted(k for k in set(old) | set(manifest)
                                 if old.get(k) != manifest.get(k))
                raise UserError(f"{store.folder} was made with other settings "
                                f"({', '.join(changed)} differ): --resume would mix two kinds "
                                f"of results; rerun with the same options, or choose another "
                                f"--out")
            # What a killed run was writing: a part, or the joined table.
            leftovers = [*store.folder.glob("*.tmp-*")]
            for p in (Path(out), Path(csv) if csv else None):
                if p is not None:
                    leftovers += p.parent.glob(f"{p.name}.tmp-*")
            for leftover in leftovers:
                leftover.unlink(missing_ok=True)
        store.manifest = manifest
        return store

    def remove_parts(self) -> None:
        """--overwrite: the earlier run's manifest, parts and temporary files go (nothing
        else in the folder: they are the only files a run writes there), so that the new run
        never mixes with it."""
        removed = [self.folder / MANIFEST, *self.folder.glob("*.parquet"),
                   *self.folder.glob("*.tmp-*")]
        for path in removed:
            path.unlink(missing_ok=True)
        print(f"--overwrite: removed the earlier run's parts from {self.folder}", file=sys.stderr)

    def part(self, key: str, failed: bool = False) -> Path:
        return self.folder / (f"{key}.failed.parquet" if failed else f"{key}.parquet")

    def done(self, key: str) -> bool:
        """Whether the file with this key has a part without error (a failed one is retried)."""
        return self.part(key).exists()

    def write(self, result) -> None:
        """Write one FileResult as its part, atomically; a success replaces an older failure."""
        if not (self.folder / MANIFEST).exists():
            try:
                self.folder.mkdir(exist_ok=True)
            except OSError as err:
                raise UserError(f"cannot create {self.folder}: {err.strerror}") from None
            _write_atomically(self.folder / MANIFEST,
                              lambda tmp: tmp.write_text(json.dumps(self.manifest, indent=1)))
        failed = result.error is not None
        _write_atomically(self.part(result.key, failed),
                          lambda tmp: pq.write_table(result.table, tmp))
        if not failed:
            self.part(result.key, failed=True).unlink(missing_ok=True)

    def join(self, media: list, out, csv=None) -> int:
        """Write the parts of `media` into `out` (Parquet) and `csv`, sorted by file; returns
        the number of rows."""
        parts = []
        for m in sorted(media, key=lambda m: m.name):
            part = self.part(m.key)
            parts.append(part if part.exists() else self.part(m.key, failed=True))
        # One schema for all: a column all null in one part (an error row) is typed by the rest.
        schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
        schema = schema.remove_metadata()
        rows = 0

        def write_all(paths):
            nonlocal rows
            parquet = pq.ParquetWriter(paths[0], schema)
            text = pa_csv.CSVWriter(paths[1], _as_text(schema)) if csv else None
            for part in parts:
                table = pq.read_table(part).cast(schema)
                parquet.write_table(table)
                if text is not None:
                    text.write_table(_escaped(table))
                rows += table.num_rows
            for writer in (parquet, text):
                if writer is not None:
                    writer.close()

        _write_atomically([out, csv] if csv else [out], write_all)
        return rows


def _as_text(schema: pa.Schema) -> pa.Schema:
    """The CSV's schema: file_bytes as text."""
    return schema.set(schema.get_field_index("file_bytes"), pa.field("file_bytes", pa.string()))


def _escaped(table: pa.Table) -> pa.Table:
    """The table with file_bytes percent-escaped, for the CSV."""
    i = table.schema.get_field_index("file_bytes")
    escaped = [None if raw is None else quote_from_bytes(raw)
               for raw in table.column(i).to_pylist()]
    return table.set_column(i, pa.field("file_bytes", pa.string()), pa.array(escaped, pa.string()))


def _write_atomically(paths, write) -> None:
    """write(temporary paths) beside `paths`, flushed to disk, then each renamed to its path:
    a path holds either its old file or the whole new one, never half of one. (One path, or
    a list of them, which write() receives as a list.)"""
    single = isinstance(paths, (str, os.PathLike))
    paths = [Path(p) for p in ([paths] if single else paths)]
    temps = [p.with_name(f"{p.name}.tmp-{os.getpid()}") for p in paths]
    try:
        write(temps[0] if single else temps)
        for tmp in temps:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    except BaseException as err:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and len(paths) == 1:
            err.filename = str(paths[0])  # the file the user named, not the temporary one
        elif isinstance(err, OSError) and err.filename is None:
            err.filename = " and ".join(str(p) for p in paths)
        raise
