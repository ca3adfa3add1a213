"""Where the files are analysed: on a Dask cluster, or in this process.

    with dask_client(scheduler=None, workers=4) as client:   # a LocalCluster on 127.0.0.1
        for media, result in on_cluster(client, files, settings): ...
    for media, result in in_process(files, settings): ...     # --workers 0: the reference

The default cluster is Dask's LocalCluster: one worker process per core, each with one
thread (a task is one file on one core: emotion/batch/analyze.py), listening on loopback
only. `--scheduler tcp://HOST:PORT` uses a cluster that is already running, of any size;
Dask's scheduler hands out the files, and nothing home-made replaces it.

Results come back as they complete (as_completed), in whatever order the workers finish;
the caller writes each and forgets it. At most WINDOW_PER_THREAD tasks per worker thread are
in flight, so a finished result waits for the client on its worker for no longer than the
client takes to write the ones before it, and memory holds about one file's rows per worker
however many files there are.

A worker lost in the middle of a file (killed, out of memory) costs that file's task: Dask
runs it again on another worker, up to its allowed-failures (3 by default), after which
the file gets an error row here and the run goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from contextlib import contextmanager

from emotion.batch.analyze import FileResult, TableBuilder, analyze_file
from emotion.errors import UserError

WINDOW_PER_THREAD = 2  # one task running and one waiting per worker thread


def cores() -> int:
    """The cores this process may run on (the default number of workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 1, timeout: float = 10.0):
    """A dask.distributed Client: connected to `scheduler`, or to a new LocalCluster of
    `workers` single-threaded worker processes (closed again on leaving)."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        check_scheduler(scheduler, timeout)
        try:
            client = Client(scheduler, timeout=timeout)
        except ValueError as err:
            raise UserError(f"--scheduler {scheduler} is not an address Dask can connect to "
                            f"({err}); give tcp://HOST:PORT") from None
        except (OSError, TimeoutError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserError(f"--scheduler {scheduler}: no Dask scheduler answered within "
                            f"{timeout:g} s ({reason}); start one with `dask scheduler` and "
                            f"workers with `dask worker {scheduler}`, or leave out --scheduler "
                            f"to run on this machine", exit_code=1) from None
        with client:
            if not client.scheduler_info().get("workers"):
                print(f"emotion batch: the scheduler at {scheduler} has no workers yet; "
                      f"waiting for one", file=sys.stderr, flush=True)
            yield client
        return
    # Workers' logs below CRITICAL are silenced: a worker whose heartbeat is in flight while
    # the cluster closes logs "Failed to communicate with scheduler during heartbeat" with a
    # traceback at ERROR (dask/distributed#7105), noise after a finished run. Nothing is
    # lost: a task's error, or a worker that died, comes back through its future as the
    # file's error row (on_cluster).
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           silence_logs=logging.CRITICAL)
    with cluster, Client(cluster) as client:
        yield client


# Every message on a Dask TCP connection is length-prefixed, and the first, sent by both ends
# as soon as they connect, is a handshake whose keys include this one (distributed/comm/
# core.py): a scheduler greets before it is spoken to.
HANDSHAKE_KEY = b"pickle-protocol"
GREETING_BYTES = 1024  # the handshake is under 100 bytes


def check_scheduler(scheduler: str, timeout: float) -> None:
    """UserError when something answers at `scheduler` (tcp://HOST:PORT) but not as a Dask
    scheduler: its dashboard (8787) or any other server. Dask's own client would send its
    handshake there and read the reply's first bytes as a message length, which ends in a
    hang or in "Unable to allocate 3.07 EiB". Nobody listening is left to the client, which
    retries until the timeout and says so; other schemes (tls://, ...) are its business too.
    """
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(scheduler)
        host, port = parse_host_port(location)
    except ValueError:
        return  # Client's own message says what a valid address is
    if scheme != "tcp":
        return
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return
    greeting, closed, deadline = b"", False, time.monotonic() + timeout
    with conn:
        while HANDSHAKE_KEY not in greeting and len(greeting) < GREETING_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            conn.settimeout(left)
            try:
                data = conn.recv(GREETING_BYTES)
            except (TimeoutError, OSError):
                break
            if not data:
                closed = True
                break
            greeting += data
    if HANDSHAKE_KEY in greeting:
        return
    said = ("it sent something else" if greeting else "it closed the connection" if closed
            else f"it sent nothing within {timeout:g} s")
    raise UserError(f"--scheduler {scheduler} did not answer as a Dask scheduler (something "
                    f"listens there, but {said}); give the scheduler's own address, which "
                    f"`dask scheduler` prints (port 8786 by default; 8787 is its dashboard)")


def on_cluster(client, files: list, settings):
    """(media, FileResult) for each file, as the cluster finishes them."""
    from dask.distributed import as_completed

    threads = max(1, sum(client.nthreads().values()))
    todo = iter(files)
    running = {}

    def submit_next(queue) -> None:
        media = next(todo, None)
        if media is not None:
            future = client.submit(analyze_file, media, settings, pure=False,
                                   key=f"emotion-batch-{media.key}-{uuid.uuid4().hex[:8]}")
            running[future.key] = media
            queue.add(future)

    queue = as_completed()
    for _ in range(WINDOW_PER_THREAD * threads):
        submit_next(queue)
    for future in queue:
        media = running.pop(future.key)
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 - the task, not the file, failed (lost workers)
            result = failed(media, f"the task failed on the cluster: {type(err).__name__}: {err}")
        future.release()
        submit_next(queue)
        yield media, result


def in_process(files: list, settings):
    """(media, FileResult) for each file, one after the other, here."""
    for media in files:
        yield media, analyze_file(media, settings)


def failed(media, error: str) -> FileResult:
    return FileResult(media.name, media.key, TableBuilder(media.name).table(error), error=error)
