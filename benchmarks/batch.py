"""`emotion batch` throughput: files/s and frames/s over the shared media, on 1 and 2 workers.

    python -m benchmarks.batch [--workers 1,2] [--max-frames N] [--json F]

For each worker count it starts the LocalCluster `emotion batch` starts (one single-threaded
worker process per worker, on loopback), times that start on its own, then times the files
through emotion.batch.cluster.on_cluster, the loop the command runs: from the first submit
to the last result back on the client (the model loads, once per worker, are inside). It
also reports each file's time on its worker, and how far the run's length (the makespan) is
above a perfect split of the work (the sum of the files' times / workers): the measure
behind the choice of one task per file (emotion/batch/__init__.py). The tables of all
worker counts are checked to be equal.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from emotion.batch import cluster
from emotion.batch.analyze import BatchSettings
from emotion.batch.media import find_media
from emotion.cnn.classifier import choose_backend

MEDIA = Path(__file__).resolve().parents[1].parent / "shared/data/media"


def cpu_model() -> str:
    """The CPU's model name as `lscpu` shows it (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_once(files, settings, workers):
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with cluster.dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter()
        results = {}
        for media, result in cluster.on_cluster(client, files, settings):
            results[media.name] = result
        finished = time.perf_counter()
    seconds = finished - started
    frames = sum(r.frames for r in results.values())
    work = sum(r.seconds for r in results.values())
    return {
        "workers": workers,
        "cluster_start_s": round(started - start, 2),
        "seconds": round(seconds, 2),
        "files_per_s": round(len(files) / seconds, 3),
        "frames_per_s": round(frames / seconds, 1),
        "frames": frames,
        "sum_of_file_seconds": round(work, 2),
        "makespan_over_perfect_split": round(seconds / (work / workers), 3),
        "per_file_s": {Path(n).name: round(r.seconds, 2) for n, r in sorted(results.items())},
        "errors": {n: r.error for n, r in results.items() if r.error},
        # The 1-minute load average before and after: other programs on a shared machine.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }, {n: r.table.to_pylist() for n, r in results.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--max-frames", type=int, help="cap each video (default: whole)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if not MEDIA.is_dir():
        print(f"benchmarks.batch: the shared media are not at {MEDIA}", file=sys.stderr)
        return 2
    files = find_media([str(MEDIA)])
    settings = BatchSettings("default", "compact", choose_backend(None),
                             max_frames=args.max_frames)
    rows, tables = [], []
    for workers in (int(w) for w in args.workers.split(",")):
        row, table = run_once(files, settings, workers)
        rows.append(row)
        tables.append(table)
        print(f"{workers} worker(s): {row['files_per_s']} files/s, {row['frames_per_s']} "
              f"frames/s ({len(files)} files, {row['frames']} frames in {row['seconds']} s; "
              f"cluster start {row['cluster_start_s']} s); makespan / perfect split "
              f"{row['makespan_over_perfect_split']}; load average {row['load_average']}; "
              f"per file {row['per_file_s']}")
    same = all(t == tables[0] for t in tables)
    print(f"tables equal across worker counts: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": cpu_model(), "cores": cluster.cores(),
            "backend": settings.backend, "files": [m.name for m in files],
            "rows": rows, "tables_equal": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
