"""The `ember` command: train, predict, inspect, serve and fetch data from the shell, with no code.

Each subcommand is a short function over ember's public API, so anything the command does a user can do
in Python the same way. Heavy imports (torch, torchvision) happen inside the subcommands, so
``ember --help`` and ``ember --version`` answer at once. Errors a user can cause print one line and exit
with code 2, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ember._version import __version__
from ember.cli._common import Predictor, Task, close_figures, fail, info_lines, modules

__all__ = ["main", "build_parser"]

EXIT_USER_ERROR = 2


def _tasks() -> dict[str, Task]:
    """Every task of every module, by name (``image-classifier``, ``segmentation``, …)."""
    tasks: dict[str, Task] = {}
    for module in modules():
        tasks.update(module.TASKS)
    return tasks


def _predictors() -> list[Predictor]:
    return [p for module in modules() for p in module.PREDICTORS]


_TASKS = _tasks()


# ---------------------------------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from ember.core.seed import set_seed

    task = _TASKS[args.task]
    start = time.perf_counter()
    set_seed(args.seed)
    dls = task.dls(args)
    print(task.describe(dls))
    learn = task.learner(args, dls)
    out = Path(args.out)
    report_dir = out.with_suffix("").parent / (out.stem + "_report")
    report_dir.mkdir(parents=True, exist_ok=True)
    if args.lr == "auto":
        sugg = learn.lr_find(show_plot=False)
        close_figures(learn.recorder.plot_lr_find(fname=report_dir / "lr_find.png"))
        lr = sugg.valley
        print(f"Learning rate from lr_find (valley): {lr:.2e}")
    else:
        lr = _positive_float(args.lr, "--lr")
    task.fit(learn, args, lr)
    learn.export(out)
    task.report(learn, report_dir, start)
    print(f"Model: {out}   report: {report_dir}/")
    return 0


def _positive_float(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise fail(f"{option} must be a positive number or 'auto', not {text!r}.")
    return value


def _cmd_lr_find(args: argparse.Namespace) -> int:
    task = _TASKS[args.task]
    dls = task.dls(args)
    learn = task.learner(args, dls)
    sugg = learn.lr_find(show_plot=False)
    close_figures(learn.recorder.plot_lr_find(fname=args.plot))
    for name, value in sugg._asdict().items():
        print(f"{name:>8}: {value:.2e}")
    print(f"Plot: {args.plot}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import ember

    learn = ember.load_learner(args.model)
    predictor = next(p for p in _predictors() if p.handles(learn))
    return predictor.predict(args, learn)


def _cmd_info(args: argparse.Namespace) -> int:
    from ember.hub import resolve_model_path
    from ember.learner.export import read_recipe

    local = resolve_model_path(args.model)  # an hf:// address: looked up once, in the Hugging Face cache
    for line in info_lines(read_recipe(local), args.model, local):
        print(line)
    return 0


_BUILTIN = {
    "mnist_5k": "5,000 MNIST digits as PNG folders (training/testing), offline",
    "penguins": "the Palmer penguins table (CSV), offline",
    "human_numbers": "the numbers 1 to 9,999 in English words (train/valid text), offline",
}


def _cmd_datasets(args: argparse.Namespace) -> int:
    from ember.data import builtin
    from ember.data.external import URLs, untar_data

    remote = {k: v for k, v in vars(URLs).items() if k.isupper() and isinstance(v, str) and v.startswith("http")}
    if args.action == "list":
        print("Built in (no network):")
        for name, what in _BUILTIN.items():
            if hasattr(builtin, name):
                print(f"  {name:<16} {what}")
        print("Downloadable (ember datasets get NAME):")
        for name in sorted(remote):
            print(f"  {name:<16} {remote[name]}")
        return 0
    name = args.name
    if name is None:
        raise fail("Name the dataset: ember datasets get NAME (see ember datasets list).")
    if name in _BUILTIN and hasattr(builtin, name):
        result = getattr(builtin, name)()
        if hasattr(result, "to_csv"):
            dest = Path(f"{name}.csv")
            result.to_csv(dest, index=False)
            result = dest
        print(result)
        return 0
    key = name.upper()
    if key not in remote:
        close = difflib.get_close_matches(key, list(remote) + list(_BUILTIN), n=3)
        raise fail(f"Unknown dataset {name!r}." + (f" Closest: {', '.join(close)}." if close else ""))
    print(untar_data(remote[key]))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from ember.serve import serve

    serve(args.model, host=args.host, port=args.port, device=args.device, open_browser=args.open)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ember.demo import run_demo

    run_demo(out_dir=args.out, epochs=args.epochs)
    return 0


# ---------------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------------
def _add_task_parsers(
    command: argparse.ArgumentParser, add_command_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    """One sub-parser per task under `command` (``ember train TASK DATA …``): the task's own options, then the
    options all tasks share, then the command's own (`add_command_args`)."""
    tasks = command.add_subparsers(dest="task", metavar="TASK", required=True, help="the kind of model")
    for name, task in _TASKS.items():
        p = tasks.add_parser(name, help=task.help, description=task.help)
        p.add_argument("data_dir", metavar="DATA", help=task.data_help)
        task.add_args(p)
        _add_shared_args(p)
        add_command_args(p)


def _add_shared_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bs", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split, the initial weights and the shuffling")
    p.add_argument("--workdir", default=".", help="folder for lr_find's temporary files")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    p.add_argument("--lr", default="auto", help="learning rate, or 'auto' to pick it with lr_find (default)")
    p.add_argument("--out", default="model.ember", help="the exported model file (default model.ember)")


def _add_lr_find_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plot", default="lr_find.png", help="where to save the plot")


_MODEL_HELP = "a .ember file, or a model on the Hugging Face Hub: hf://user/name[@revision]"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `ember` command."""
    parser = argparse.ArgumentParser(prog="ember", description="ember: train, inspect and use deep-learning models.")
    parser.add_argument("--version", action="version", version=f"ember {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on your data and export it")
    _add_task_parsers(train, _add_train_args)
    train.set_defaults(func=_cmd_train)

    lrf = sub.add_parser("lr-find", help="plot loss against learning rate and suggest rates")
    _add_task_parsers(lrf, _add_lr_find_args)
    lrf.set_defaults(func=_cmd_lr_find)

    pred = sub.add_parser("predict", help="predict with an exported model (images, tables, ratings or texts)")
    pred.add_argument("model", help=_MODEL_HELP)
    pred.add_argument("inputs", nargs="*", metavar="INPUT", help="what to predict: files or folders (see docs/cli.md)")
    pred.add_argument("--top-k", type=int, default=3, help="how many classes to show per item (default 3)")
    pred.add_argument("--bs", type=int, default=64, help="batch size")
    pred.add_argument("--json", action="store_true", help="print JSON")
    pred.add_argument("--out", default=None, help="tables and ratings: also write the predictions to this CSV file")
    for module in modules():
        module.add_predict_args(pred)
    pred.set_defaults(func=_cmd_predict)

    info = sub.add_parser("info", help="what an exported model file holds")
    info.add_argument("model", help=_MODEL_HELP)
    info.set_defaults(func=_cmd_info)

    srv = sub.add_parser("serve", help="a web page and a JSON API that predict with an exported model")
    srv.add_argument("model", help=_MODEL_HELP)
    srv.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network interface)",
    )
    srv.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    srv.add_argument("--device", default=None, help="where the model runs: cpu (default), cuda, cuda:1, mps")
    srv.add_argument("--open", action="store_true", help="open the page in a web browser")
    srv.set_defaults(func=_cmd_serve)

    ds = sub.add_parser("datasets", help="list or fetch datasets")
    ds.add_argument("action", choices=("list", "get"))
    ds.add_argument("name", nargs="?", default=None)
    ds.set_defaults(func=_cmd_datasets)

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
    except BrokenPipeError:  # the reader went away (`ember predict … | head`): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silences the interpreter's flush at exit)
        return 0
    except Exception as e:
        from ember.core.errors import EmberError

        if args.debug or not isinstance(e, EmberError):
            raise
        print(f"ember: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
