"""The `emotion` command line: one subcommand per module, imported only when used.

Each command module defines `add_arguments(parser)` and `run(args) -> int`. Importing lazily
keeps `emotion --help` fast and lets `emotion gradcheck` run without OpenCV.
"""

import argparse
import importlib
import os
import signal
import sys

from emotion.errors import UserError

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("emotion.commands.train", "train a model on FER2013"),
    "evaluate": ("emotion.commands.evaluate", "evaluate weights on a FER2013 split"),
    "predict": ("emotion.commands.predict", "classify the faces in images or folders"),
    "video": ("emotion.commands.video", "annotate a whole video file, with CSV/JSONL output"),
    "batch": ("emotion.commands.batch",
              "images, videos and folders into one table, on a Dask cluster"),
    "live": ("emotion.commands.live", "the live webcam demo"),
    "explain": ("emotion.commands.explain", "show what the CNN sees for one image"),
    "serve": ("emotion.commands.serve",
              "the web page: live camera, photos, videos, inside the network"),
    "export": ("emotion.commands.export",
              "write the emotion model as an ONNX file (needs the [onnx] extra)"),
    "gradcheck": ("nnlite.gradcheck", "gradient-check every nnlite op on a backend"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion",
        description="Detect faces and classify their emotion with a CNN written from scratch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # prints usage and exits 2 for an unknown command
        return 2
    name, rest = argv[0], argv[1:]
    previous_sigterm = _terminate_as_interrupt()
    try:
        # Importing nnlite applies NNLITE_BACKEND, which fails cleanly if that backend cannot run.
        module = importlib.import_module(COMMANDS[name][0])
        parser = argparse.ArgumentParser(prog=f"emotion {name}", description=COMMANDS[name][1])
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        code = int(module.run(args) or 0)
        sys.stdout.flush()  # here, not at exit: a closed pipe must end up in the handler below
        return code
    except UserError as err:
        print(f"emotion {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except _backend_errors() as err:
        print(f"emotion {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emotion {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`emotion predict DIR | head -1`): stop quietly, as other
        # command-line tools do. stdout then points at devnull, so that Python's own flush at
        # exit does not hit the closed pipe again and print a traceback after all.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as err:
        # The checks in emotion/io/inputs.py and outputs.py catch most of these before any work;
        # this is for what they cannot see: a full disk, a file system that refuses the
        # write (/proc), root to whom os.access says yes, a file that changed meanwhile.
        print(f"emotion {name}: error: {_os_error(err)}", file=sys.stderr)
        return 2
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _os_error(err: OSError) -> str:
    """One line for an OSError: the file, then the reason ("out.onnx: No space left on
    device"), the reason in lower case as the other messages write it."""
    reason = err.strerror or str(err) or type(err).__name__
    reason = reason[:1].lower() + reason[1:]
    names = [str(f) for f in (err.filename, err.filename2) if f is not None]
    return f"{' -> '.join(names) or 'a file'}: {reason}"


def _terminate_as_interrupt():
    """SIGTERM (what `timeout`, `kill`, systemd and Slurm send) does what Ctrl-C does, in
    every command: it calls the SIGINT handler in force when it arrives, so `train`'s (finish
    the step, save the epoch so far) or Python's own (KeyboardInterrupt, which closes a video
    so that it stays playable). Returns the handler it replaced."""
    def handle(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIG_IGN or SIG_DFL set by someone else: stop as Python's default does
            raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread (main() called from a thread): leave it alone
        return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotion-nnlite")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _backend_errors():
    """nnlite's errors that are the user's to fix (a backend that cannot run, a bad weight file)."""
    from nnlite.backends import BackendError, DeviceMismatchError
    from nnlite.serialization import WeightFileError

    return (BackendError, DeviceMismatchError, WeightFileError)


if __name__ == "__main__":
    raise SystemExit(main())
