"""`emotion serve`: the live demo, photo and video analysis and a look inside the network,
as a web page served by the model's own process.

    emotion serve [--host 127.0.0.1] [--port 8000] [--weights W] [--backend B]
                  [--max-upload-mb 20] [--max-megapixels 40] [--idle-timeout 60]
    -> open http://127.0.0.1:8000 in a browser

The model still runs on nnlite in Python; the browser only sends camera frames and files
and draws the answers. This module is the command (options, checks, the server's start); the
page's code is emotion/serve/.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys

from emotion.video import pipeline
from emotion.errors import UserError
from emotion.commands import options
from emotion.serve.guard import ALL_INTERFACES

# A limit is a finite number above 0: nan, inf or 1e400 would pass a `> 0` test or crash at
# int(), after the model has loaded.
positive_float = options.number_type(float, 0, low_open=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "0.0.0.0 makes the page reachable from the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    options.add_weights_option(parser, default=pipeline.VIDEO_WEIGHTS,
                               when_omitted=f"{pipeline.VIDEO_WEIGHTS!r}, fast enough for the "
                               "live camera")
    options.add_backend_option(parser)
    parser.add_argument("--max-upload-mb", type=positive_float, default=20, metavar="MB",
                        help="largest upload accepted, in MB (default 20); larger gets 413")
    parser.add_argument("--max-megapixels", type=positive_float, default=40, metavar="MP",
                        help="largest image accepted, in millions of pixels once decoded "
                             "(default 40); larger gets 413")
    parser.add_argument("--idle-timeout", type=positive_float, default=60, metavar="S",
                        help="close a live camera session that sends no frame for S seconds "
                             "(default 60), so that idle pages do not hold its 4 places")


def _check_can_listen(host: str, port: int) -> None:
    """UserError if (host, port) cannot be bound: taken by another server, or not an address
    of this machine. uvicorn would find out too, but only after the model has loaded, and it
    ends with its own log line and exit code instead of ours."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(f"--host {host}: not an address of this machine ({err.strerror})")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            taken = err.errno == errno.EADDRINUSE
            raise UserError(f"cannot listen on {host}:{port}: "
                            + ("the port is in use (another emotion serve?); pick another "
                               "with --port" if taken else err.strerror), exit_code=1) from None


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: give a port between 1 and 65535")
    _check_can_listen(args.host, args.port)  # before the model loads: a taken port costs nothing
    import uvicorn

    from emotion.serve.app import create_app

    logging.basicConfig(level=logging.INFO, format="emotion serve: %(message)s")
    with pipeline.one_blas_thread():
        app = create_app(weights=args.weights, backend=args.backend,
                         max_upload_mb=args.max_upload_mb, host=args.host,
                         max_pixels=int(args.max_megapixels * 1e6),
                         idle_timeout=args.idle_timeout)
        if args.host in ALL_INTERFACES:
            print(f"emotion serve: warning: listening on all interfaces ({args.host or '*'}): "
                  f"anyone who can reach this machine can use the page and its camera "
                  f"socket; use --host 127.0.0.1 to keep it local", file=sys.stderr)
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"emotion serve: open http://{host}:{args.port}/ (Ctrl+C stops)", file=sys.stderr)
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                        access_log=False)
        except OSError as err:  # the port is taken, or the address is not this machine's
            raise UserError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}",
                            exit_code=1) from None
    return 0
