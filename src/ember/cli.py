"""The `ember` command: train, predict, inspect and fetch data from the shell, with no code.

Each subcommand is a short function over ember's public API, so anything the command does a user can do
in Python the same way. Heavy imports (torch, torchvision) happen inside the subcommands, so
``ember --help`` and ``ember --version`` answer at once. Errors a user can cause print one line and exit
with code 2, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ember._version import __version__

__all__ = ["main", "build_parser"]

EXIT_USER_ERROR = 2
_TASKS = ("image-classifier",)
#: Above this share of unreadable images (or this many), training stops instead of skipping them.
_MAX_BROKEN_SHARE, _MAX_BROKEN = 0.05, 20


def _fail(message: str) -> Exception:
    from ember.core.errors import EmberError

    return EmberError(message)


# ---------------------------------------------------------------------------------------------------
# data for image classification
# ---------------------------------------------------------------------------------------------------
def _check_arch(arch: str) -> None:
    """Fail early, with the closest names, on an architecture no library knows."""
    import timm
    import torchvision

    from ember.vision.models import is_model, list_models

    if is_model(arch) or arch in torchvision.models.list_models() or timm.is_model(arch):
        return
    names = list(list_models()) + list(torchvision.models.list_models()) + list(timm.list_models())
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
    hint = f" Closest names: {', '.join(close)}." if close else " See torchvision.models.list_models() or timm."
    raise _fail(f"Unknown architecture {arch!r}.{hint}")


def _image_files(data_dir: Path) -> list[Path]:
    from ember.data import get_image_files, verify_images

    if not data_dir.is_dir():
        raise _fail(f"No folder at {data_dir}. Give a folder with one sub-folder of images per class.")
    files = list(get_image_files(data_dir))
    if not files:
        raise _fail(f"No image files under {data_dir} (looked for .jpg, .png, … in every sub-folder).")
    broken = set(verify_images(files))
    if broken:
        names = ", ".join(str(p) for p in sorted(broken)[:5]) + (" …" if len(broken) > 5 else "")
        if len(broken) > _MAX_BROKEN or len(broken) > _MAX_BROKEN_SHARE * len(files):
            raise _fail(
                f"{len(broken)} of {len(files)} images cannot be read ({names}). Remove or fix them "
                "(ember.data.verify_images lists them all) and run again."
            )
        warnings.warn(f"Skipping {len(broken)} unreadable image(s): {names}", stacklevel=2)
        files = [f for f in files if f not in broken]
    return files


def _image_dls(args: argparse.Namespace) -> Any:
    from ember.data import CategoryBlock, DataBlock, GrandparentSplitter, RandomSplitter, parent_label
    from ember.vision import ImageBlock, Normalize, Resize, aug_transforms

    data_dir = Path(args.data_dir)
    files = _image_files(data_dir)
    if args.valid_folder:
        if not (data_dir / args.valid_folder).is_dir():
            raise _fail(f"No validation folder {data_dir / args.valid_folder}.")
        train_name = args.train_folder
        if not (data_dir / train_name).is_dir():
            raise _fail(f"No training folder {data_dir / train_name} (use --train-folder to name it).")
        files = [f for f in files if f.parent.parent.name in (train_name, args.valid_folder)]
        splitter: Any = GrandparentSplitter(train_name=train_name, valid_name=args.valid_folder)
    else:
        splitter = RandomSplitter(valid_pct=args.valid_pct, seed=args.seed)
    classes = sorted({parent_label(f) for f in files})
    if len(classes) < 2:
        found = classes[0] if classes else "none"
        raise _fail(
            f"Found one class ({found}) under {data_dir}: a classifier needs at least two. "
            "Put each class's images in its own sub-folder (DATA/cat/*.jpg, DATA/dog/*.jpg)."
        )
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=lambda _: files,
        splitter=splitter,
        get_y=parent_label,
        item_tfms=[Resize(args.size)],
        # Pretrained models get their own statistics from vision_learner; a model trained from scratch is
        # normalized with the statistics of a training batch.
        batch_tfms=[*aug_transforms(), *([] if args.pretrained else [Normalize()])],
    )
    return dblock.dataloaders(data_dir, bs=args.bs)


def _image_learner(args: argparse.Namespace, dls: Any) -> Any:
    from ember.metrics import accuracy, error_rate
    from ember.vision import vision_learner

    _check_arch(args.arch)
    return vision_learner(dls, args.arch, pretrained=args.pretrained, metrics=[accuracy, error_rate], path=args.workdir)


# ---------------------------------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from ember.core.seed import set_seed
    from ember.vision import ClassificationInterpretation

    start = time.perf_counter()
    set_seed(args.seed)
    dls = _image_dls(args)
    print(
        f"Data: {len(dls.train_ds)} training and {len(dls.valid_ds)} validation images, classes: {', '.join(dls.vocab)}"
    )
    learn = _image_learner(args, dls)
    out = Path(args.out)
    report_dir = out.with_suffix("").parent / (out.stem + "_report")
    report_dir.mkdir(parents=True, exist_ok=True)
    if args.lr == "auto":
        sugg = learn.lr_find(show_plot=False)
        learn.recorder.plot_lr_find(fname=report_dir / "lr_find.png")
        lr = sugg.valley
        print(f"Learning rate from lr_find (valley): {lr:.2e}")
    else:
        lr = float(args.lr)
    if args.pretrained:
        learn.fine_tune(args.epochs, base_lr=lr)
    else:
        learn.fit_one_cycle(args.epochs, lr)
    learn.export(out)
    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix(fname=report_dir / "confusion_matrix.png")
    learn.recorder.plot_loss(fname=report_dir / "loss.png")
    loss, acc, err = learn.validate()
    print(
        f"Validation accuracy {acc:.4f} (error rate {err:.4f}, loss {loss:.4f}) in {time.perf_counter() - start:.0f} s"
    )
    confused = interp.most_confused(min_val=1)[:5]
    if confused:
        print("Most confused (actual, predicted, count): " + "; ".join(f"{a} → {p}: {n}" for a, p, n in confused))
    print(f"Model: {out}   report: {report_dir}/")
    return 0


def _cmd_lr_find(args: argparse.Namespace) -> int:
    dls = _image_dls(args)
    learn = _image_learner(args, dls)
    sugg = learn.lr_find(show_plot=False)
    learn.recorder.plot_lr_find(fname=args.plot)
    for name, value in sugg._asdict().items():
        print(f"{name:>8}: {value:.2e}")
    print(f"Plot: {args.plot}")
    return 0


def _collect_files(paths: Sequence[str]) -> list[Path]:
    from ember.data import get_image_files

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += list(get_image_files(p))
        elif p.exists():
            files.append(p)
        else:
            raise _fail(f"No file or folder at {p}.")
    if not files:
        raise _fail("No image files to predict.")
    return files


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    import ember

    learn = ember.load_learner(args.model)
    files = _collect_files(args.files)
    vocab = learn.dls.vocab
    _, _, probs = learn.predict_batch(files, bs=args.bs)
    k = min(args.top_k, probs.shape[1])
    top_p, top_i = torch.topk(probs, k, dim=1)
    results = [
        {
            "file": str(f),
            "predictions": [
                {"label": vocab[i] if vocab else int(i), "probability": round(float(p), 6)}
                for p, i in zip(ps.tolist(), ix.tolist())
            ],
        }
        for f, ps, ix in zip(files, top_p, top_i)
    ]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            best = ", ".join(f"{q['label']} {q['probability']:.3f}" for q in r["predictions"])
            print(f"{r['file']}: {best}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ember.learner.export import read_recipe

    rec = read_recipe(args.model)
    size = Path(args.model).stat().st_size
    model = rec["model"]
    print(f"File: {args.model} ({size / 1e6:.2f} MB)")
    print(f"Written by ember {rec['ember_version']} (format {rec['format_version']})")
    print(f"Learner: {rec.get('learner')}  application: {rec.get('application') or 'generic'}")
    if "factory" in model:
        print(f"Model: {model['factory']}({', '.join(f'{k}={v!r}' for k, v in model.get('kwargs', {}).items())})")
    else:
        print(f"Model: {model.get('class') or 'a class defined in a script (load with model=...)'}")
    print(f"Parameters: {rec.get('n_params', 0):,}")
    data = (rec.get("data") or {}).get("data") or {}
    for b in data.get("blocks") or []:
        vocab = b.get("data", {}).get("vocab")
        extra = (
            f" ({len(vocab)} classes: {', '.join(map(str, vocab[:10]))}{' …' if len(vocab) > 10 else ''})"
            if vocab
            else ""
        )
        print(f"Block: {b['type']}{extra}")
    for t in data.get("item_tfms", []) + data.get("batch_tfms", []):
        print(f"Transform: {t['type']} {json.dumps(t.get('data', {}))[:100]}")
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
        raise _fail("Name the dataset: ember datasets get NAME (see ember datasets list).")
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
        raise _fail(f"Unknown dataset {name!r}." + (f" Closest: {', '.join(close)}." if close else ""))
    print(untar_data(remote[key]))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ember.demo import run_demo

    run_demo(out_dir=args.out, epochs=args.epochs)
    return 0


# ---------------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------------
def _add_image_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=_TASKS, help="what to train")
    p.add_argument("data_dir", help="a folder with one sub-folder of images per class")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--valid-pct", type=float, default=0.2, help="share of images held out (default 0.2)")
    split.add_argument("--valid-folder", default=None, help="use DATA/<train>/<class> and DATA/<NAME>/<class>")
    p.add_argument("--train-folder", default="train", help="training folder name with --valid-folder")
    p.add_argument("--arch", default="resnet18", help="torchvision, timm or ember model name (default resnet18)")
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start from pretrained weights in the local torchvision/timm cache (default on)",
    )
    p.add_argument("--size", type=int, default=224, help="image size (default 224)")
    p.add_argument("--bs", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split, the initial weights and the shuffling")
    p.add_argument("--workdir", default=".", help="folder for lr_find's temporary files")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `ember` command."""
    parser = argparse.ArgumentParser(prog="ember", description="ember: train, inspect and use deep-learning models.")
    parser.add_argument("--version", action="version", version=f"ember {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on a folder and export it")
    _add_image_data_args(train)
    train.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    train.add_argument("--lr", default="auto", help="learning rate, or 'auto' to pick it with lr_find (default)")
    train.add_argument("--out", default="model.ember", help="the exported model file (default model.ember)")
    train.set_defaults(func=_cmd_train)

    lrf = sub.add_parser("lr-find", help="plot loss against learning rate and suggest rates")
    _add_image_data_args(lrf)
    lrf.add_argument("--plot", default="lr_find.png", help="where to save the plot")
    lrf.set_defaults(func=_cmd_lr_find)

    pred = sub.add_parser("predict", help="predict image files or folders with an exported model")
    pred.add_argument("model", help="a .ember file")
    pred.add_argument("files", nargs="+", help="image files or folders")
    pred.add_argument("--top-k", type=int, default=3, help="how many classes to show per image (default 3)")
    pred.add_argument("--bs", type=int, default=64, help="batch size")
    pred.add_argument("--json", action="store_true", help="print JSON")
    pred.set_defaults(func=_cmd_predict)

    info = sub.add_parser("info", help="what an exported model file holds")
    info.add_argument("model", help="a .ember file")
    info.set_defaults(func=_cmd_info)

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
