"""The `ember` command.

Each subcommand is a small function over ember's public API, so that anything the command does a
user can also do in Python. Heavy imports (torch, torchvision) happen inside the subcommands, so
``ember --help`` and ``ember --version`` answer at once. Errors a user can cause print one line and
exit with a non-zero code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ember._version import __version__

__all__ = ["main", "build_parser"]

EXIT_USER_ERROR = 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from ember.demo import run_demo

    run_demo(out_dir=args.out, epochs=args.epochs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `ember` command (subcommands register here)."""
    parser = argparse.ArgumentParser(
        prog="ember",
        description="ember: train, inspect and use deep-learning models from the shell.",
    )
    parser.add_argument("--version", action="version", version=f"ember {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="train the built-in MNIST demo offline and save its plots")
    demo.add_argument("--out", default="demo_output", help="folder for the plots and the exported model")
    demo.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ember` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except KeyboardInterrupt:
        print("ember: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from ember.core.errors import EmberError

        if args.debug or not isinstance(e, EmberError):
            raise
        print(f"ember: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
