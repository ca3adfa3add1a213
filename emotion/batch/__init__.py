"""`emotion batch INPUT... --out results.parquet`: images, videos and folders of them into one
table, on a Dask cluster, without losing anything to a kill, a lost worker or a bad file.

    media.py       the files the inputs name, each with its kind and a key (path, size, mtime)
    analyze.py     one file's rows: the task each worker runs (the model loaded once per worker)
    cluster.py     where the tasks run: a LocalCluster, an existing cluster, or this process
    part_store.py  each file's result written atomically as it arrives; --resume; the join
    emotion/commands/batch.py  the options, the checks before any work, the progress bar

Each file is one task, a whole video included. Splitting a long video into frame ranges
would balance the workers better at the end of a run, but the tracks (their IDs, the
smoothed probabilities and the phase, which carry state from frame to frame) would restart
at every cut and have to be joined afterwards, and the joined table would still differ from
one run straight through. With many files the imbalance is small anyway: the workers run
out of files at most one file's time apart. It shows only on a handful of files: on the six
shared media (2-vCPU VM, `python -m benchmarks.batch`) group_pan.mp4 was 63% of the work
(75.8 of 119.6 s on one worker), so two workers took 79.3 s, 1.11x a perfect split, with
that one video the whole time on one of them.
"""
