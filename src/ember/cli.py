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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ember._version import __version__

__all__ = ["main", "build_parser"]

EXIT_USER_ERROR = 2
#: Above this share of unreadable images (or this many), training stops instead of skipping them.
_MAX_BROKEN_SHARE, _MAX_BROKEN = 0.05, 20


def _fail(message: str) -> Exception:
    from ember.core.errors import EmberError

    return EmberError(message)


def _data_fail(message: str) -> Exception:
    from ember.core.errors import DataError

    return DataError(message)


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


def _image_report(learn: Any, report_dir: Path, start: float) -> None:
    """Confusion matrix and loss plot in `report_dir`; print the validation accuracy and the most confused pairs."""
    from ember.vision import ClassificationInterpretation

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


# ---------------------------------------------------------------------------------------------------
# data for segmentation
# ---------------------------------------------------------------------------------------------------
def _mask_path(labels_dir: Path, suffix: str, image: Path) -> Path:
    """Where the mask of `image` is: ``<labels_dir>/<stem><suffix>.png`` (a module-level function: picklable)."""
    return labels_dir / f"{Path(image).stem}{suffix}.png"


def _read_codes(data_dir: Path, name: str | None) -> list[str] | None:
    """The class names in ``DATA/<name>`` (default ``codes.txt`` when it exists).

    Several non-empty lines give one name per line (names may hold spaces); a single line is split on
    whitespace. No file (when none was named) gives ``None``: the codes are then inferred from the masks.
    """
    path = data_dir / (name or "codes.txt")
    if not path.is_file():
        if name is None:
            return None
        raise _data_fail(f"No codes file {path}. Give one class name per line, or leave out --codes to infer them.")
    text = path.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    codes = lines if len(lines) > 1 else text.split()
    if not codes:
        raise _data_fail(f"The codes file {path} holds no class names: give one per line.")
    return codes


def _segmentation_dls(args: argparse.Namespace) -> Any:
    from ember.vision import Normalize, Resize, SegmentationDataLoaders, aug_transforms

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise _data_fail(f"No folder at {data_dir}. Give a folder with {args.images}/ and {args.labels}/ inside.")
    images_dir, labels_dir = data_dir / args.images, data_dir / args.labels
    if not images_dir.is_dir():
        raise _data_fail(f"No images folder {images_dir} (name it with --images).")
    if not labels_dir.is_dir():
        raise _data_fail(f"No labels folder {labels_dir} (name it with --labels).")
    files = _image_files(images_dir)
    label_func = partial(_mask_path, labels_dir, args.label_suffix)
    missing = [f for f in files if not label_func(f).is_file()]
    if missing:
        shown = ", ".join(f"{f.name} (no {label_func(f)})" for f in missing[:3]) + (" …" if len(missing) > 3 else "")
        raise _data_fail(
            f"{len(missing)} of {len(files)} images have no mask: {shown}. The mask of {args.images}/X.jpg must be "
            f"{labels_dir}/X{args.label_suffix}.png (set --labels and --label-suffix)."
        )
    codes = _read_codes(data_dir, args.codes)
    return SegmentationDataLoaders.from_label_func(
        data_dir,
        [f.absolute() for f in files],  # relative names would be read as relative to data_dir
        label_func,
        valid_pct=args.valid_pct,
        seed=args.seed,
        codes=codes,
        item_tfms=[Resize(args.size)],
        # as for classifiers: pretrained encoders get their statistics from unet_learner
        batch_tfms=[*aug_transforms(), *([] if args.pretrained else [Normalize()])],
        bs=args.bs,
    )


def _segmentation_learner(args: argparse.Namespace, dls: Any) -> Any:
    from ember.vision import DiceMulti, foreground_acc, unet_learner

    _check_arch(args.arch)
    return unet_learner(
        dls, args.arch, pretrained=args.pretrained, metrics=[foreground_acc, DiceMulti()], path=args.workdir
    )


def _segmentation_report(learn: Any, report_dir: Path, start: float) -> None:
    """Loss plot and predicted masks in `report_dir`; print the validation foreground accuracy and Dice."""
    import matplotlib.pyplot as plt

    for fig in (
        learn.recorder.plot_loss(fname=report_dir / "loss.png"),
        learn.show_results(max_n=6, fname=report_dir / "results.png"),
    ):
        if fig is not None and hasattr(fig, "savefig"):
            plt.close(fig)
    loss, fg_acc, dice = learn.validate()
    print(
        f"Validation foreground accuracy {_fmt(fg_acc)}, Dice {_fmt(dice)} (loss {_fmt(loss)}) "
        f"in {time.perf_counter() - start:.0f} s"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# ---------------------------------------------------------------------------------------------------
# tasks: what `ember train TASK` and `ember lr-find TASK` build
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Task:
    """One kind of model the command trains: its own data options, DataLoaders, learner and report."""

    help: str
    data_help: str
    add_data_args: Callable[[argparse.ArgumentParser], None]
    dls: Callable[[argparse.Namespace], Any]
    learner: Callable[[argparse.Namespace, Any], Any]
    report: Callable[[Any, Path, float], None]
    names: str  # what `dls.vocab` holds, for the summary line


def _add_classifier_data_args(p: argparse.ArgumentParser) -> None:
    split = p.add_mutually_exclusive_group()
    split.add_argument("--valid-pct", type=float, default=0.2, help="share of images held out (default 0.2)")
    split.add_argument("--valid-folder", default=None, help="use DATA/<train>/<class> and DATA/<NAME>/<class>")
    p.add_argument("--train-folder", default="train", help="training folder name with --valid-folder")


def _add_segmentation_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", default="images", help="the images' folder inside DATA (default images)")
    p.add_argument("--labels", default="labels", help="the masks' folder inside DATA (default labels)")
    p.add_argument(
        "--label-suffix",
        default="",
        help="the mask of X.jpg is <labels>/X<suffix>.png (default none; CamVid uses _P)",
    )
    p.add_argument(
        "--codes",
        default=None,
        help="class names in DATA/<codes>, one per line (default codes.txt when it exists, else inferred)",
    )
    p.add_argument("--valid-pct", type=float, default=0.2, help="share of images held out (default 0.2)")


_TASKS: dict[str, _Task] = {
    "image-classifier": _Task(
        help="one class per image, from the sub-folder names",
        data_help="a folder with one sub-folder of images per class",
        add_data_args=_add_classifier_data_args,
        dls=_image_dls,
        learner=_image_learner,
        report=_image_report,
        names="classes",
    ),
    "segmentation": _Task(
        help="one class per pixel (a U-Net), from images and their masks",
        data_help="a folder with images/, labels/ (one mask per image, pixel value = class id) and codes.txt",
        add_data_args=_add_segmentation_data_args,
        dls=_segmentation_dls,
        learner=_segmentation_learner,
        report=_segmentation_report,
        names="codes",
    ),
}


# ---------------------------------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from ember.core.seed import set_seed

    task = _TASKS[args.task]
    start = time.perf_counter()
    set_seed(args.seed)
    dls = task.dls(args)
    print(
        f"Data: {len(dls.train_ds)} training and {len(dls.valid_ds)} validation images, "
        f"{task.names}: {', '.join(map(str, dls.vocab))}"
    )
    learn = task.learner(args, dls)
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
    task.report(learn, report_dir, start)
    print(f"Model: {out}   report: {report_dir}/")
    return 0


def _cmd_lr_find(args: argparse.Namespace) -> int:
    task = _TASKS[args.task]
    dls = task.dls(args)
    learn = task.learner(args, dls)
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


def _is_segmentation(learn: Any) -> bool:
    """Whether `learn` predicts masks: its target is a MaskBlock, or its loss decodes ``(B, C, H, W)`` scores."""
    from ember.vision import MaskBlock

    targets = getattr(learn.dls, "target_blocks", None) or []
    if targets:
        return any(isinstance(b, MaskBlock) or getattr(b, "kind", None) == "mask" for b in targets)
    return getattr(learn.loss_func, "axis", -1) == 1  # no blocks to ask: class scores on axis 1 of (B, C, H, W)


def _mask_names(files: Sequence[Path]) -> list[str]:
    """``<stem>.png`` per file, with ``_2``, ``_3``, … when two inputs share a stem (so none overwrites another)."""
    used: set[str] = set()
    names = []
    for f in files:
        name, k = f"{f.stem}.png", 1
        while name in used:
            k += 1
            name = f"{f.stem}_{k}.png"
        used.add(name)
        names.append(name)
    return names


def _mask_palette(n_classes: int) -> list[int]:
    """A PNG palette giving each class id the colour ember draws it in (``show_mask``: tab20 over 0 … n-1)."""
    from matplotlib import colormaps

    cmap, top = colormaps["tab20"], max(1, n_classes - 1)
    palette = []
    for i in range(min(n_classes, 256)):
        palette += [round(255 * c) for c in cmap(i / top)[:3]]
    return palette


def _save_mask(mask: Any, dest: Path, palette: list[int]) -> None:
    """Write an ``(H, W)`` tensor of class ids as a PNG whose pixel values are the ids (mode "P"; "I;16" above 255)."""
    import numpy as np
    from PIL import Image

    ids = mask.numpy()
    if ids.max(initial=0) < 256:
        img = Image.fromarray(ids.astype(np.uint8))
        img.putpalette(palette)  # mode "L" -> "P": viewers show colours, the values stay the ids
    else:
        img = Image.fromarray(ids.astype(np.uint16))  # mode "I;16"
    img.save(dest)


def _predict_masks(args: argparse.Namespace, learn: Any, files: list[Path]) -> int:
    """Write a mask PNG per file into the output folder; print each file's largest classes by share of pixels."""
    import torch

    out_dir = Path(args.out_dir) if args.out_dir else Path(f"{Path(args.model).stem}_masks")
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = list(learn.dls.vocab or [])
    names = _mask_names(files)
    palette: list[int] | None = None
    results = []
    for start in range(0, len(files), args.bs):  # a chunk at a time: (B, C, H, W) probabilities add up fast
        chunk = files[start : start + args.bs]
        _, dec, probs = learn.predict_batch(chunk, bs=args.bs)  # dec: (B, H, W) class ids
        if dec.dim() != 3:
            raise _fail(f"{args.model} does not predict masks (its predictions have shape {tuple(dec.shape)}).")
        n_classes = probs.shape[1]
        if palette is None:
            palette = _mask_palette(n_classes)
        for f, name, mask in zip(chunk, names[start:], dec):
            dest = out_dir / name
            _save_mask(mask, dest, palette)
            share = torch.bincount(mask.flatten(), minlength=n_classes).double() / mask.numel()
            top_p, top_i = torch.topk(share, min(args.top_k, n_classes))
            result = {
                "file": str(f),
                "mask": str(dest),
                "classes": [
                    {"label": codes[i] if i < len(codes) else i, "share": round(p, 6)}
                    for p, i in zip(top_p.tolist(), top_i.tolist())
                    if p > 0
                ],
            }
            results.append(result)
            if not args.json:
                shares = ", ".join(f"{q['label']} {q['share']:.3f}" for q in result["classes"])
                print(f"{f}: {shares} -> {dest}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    import ember

    learn = ember.load_learner(args.model)
    files = _collect_files(args.files)
    if _is_segmentation(learn):
        return _predict_masks(args, learn, files)
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
        block_data = b.get("data") or {}
        vocab, noun = (
            (block_data.get("vocab"), "classes") if block_data.get("vocab") else (block_data.get("codes"), "codes")
        )
        extra = (
            f" ({len(vocab)} {noun}: {', '.join(map(str, vocab[:10]))}{' …' if len(vocab) > 10 else ''})"
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
def _add_task_parsers(
    command: argparse.ArgumentParser, add_command_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    """One sub-parser per task under `command` (``ember train TASK DATA …``): the task's data options, then the
    model options all tasks share, then the command's own (`add_command_args`)."""
    tasks = command.add_subparsers(dest="task", metavar="TASK", required=True, help="the kind of model")
    for name, task in _TASKS.items():
        p = tasks.add_parser(name, help=task.help, description=task.help)
        p.add_argument("data_dir", metavar="DATA", help=task.data_help)
        task.add_data_args(p)
        _add_model_args(p)
        add_command_args(p)


def _add_model_args(p: argparse.ArgumentParser) -> None:
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


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    p.add_argument("--lr", default="auto", help="learning rate, or 'auto' to pick it with lr_find (default)")
    p.add_argument("--out", default="model.ember", help="the exported model file (default model.ember)")


def _add_lr_find_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plot", default="lr_find.png", help="where to save the plot")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `ember` command."""
    parser = argparse.ArgumentParser(prog="ember", description="ember: train, inspect and use deep-learning models.")
    parser.add_argument("--version", action="version", version=f"ember {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on a folder and export it")
    _add_task_parsers(train, _add_train_args)
    train.set_defaults(func=_cmd_train)

    lrf = sub.add_parser("lr-find", help="plot loss against learning rate and suggest rates")
    _add_task_parsers(lrf, _add_lr_find_args)
    lrf.set_defaults(func=_cmd_lr_find)

    pred = sub.add_parser("predict", help="predict image files or folders with an exported model")
    pred.add_argument("model", help="a .ember file")
    pred.add_argument("files", nargs="+", help="image files or folders")
    pred.add_argument("--top-k", type=int, default=3, help="how many classes to show per image (default 3)")
    pred.add_argument("--bs", type=int, default=64, help="batch size")
    pred.add_argument("--json", action="store_true", help="print JSON")
    pred.add_argument(
        "--out-dir",
        default=None,
        help="segmentation models: folder for the mask PNGs (default <model stem>_masks/)",
    )
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
