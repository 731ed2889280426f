"""`ember train image-classifier` and `ember train segmentation`, and predictions on image files."""

from __future__ import annotations

import argparse
import difflib
import json
import time
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ember.cli._common import Predictor, Task, close_figures, data_fail, fail, fmt

__all__ = ["TASKS", "PREDICTORS", "add_predict_args"]

#: Above this share of unreadable images (or this many), training stops instead of skipping them.
_MAX_BROKEN_SHARE, _MAX_BROKEN = 0.05, 20


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
    raise fail(f"Unknown architecture {arch!r}.{hint}")


def _image_files(data_dir: Path) -> list[Path]:
    from ember.data import get_image_files, verify_images

    if not data_dir.is_dir():
        raise fail(f"No folder at {data_dir}. Give a folder with one sub-folder of images per class.")
    files = list(get_image_files(data_dir))
    if not files:
        raise fail(f"No image files under {data_dir} (looked for .jpg, .png, … in every sub-folder).")
    broken = set(verify_images(files))
    if broken:
        names = ", ".join(str(p) for p in sorted(broken)[:5]) + (" …" if len(broken) > 5 else "")
        if len(broken) > _MAX_BROKEN or len(broken) > _MAX_BROKEN_SHARE * len(files):
            raise fail(
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
            raise fail(f"No validation folder {data_dir / args.valid_folder}.")
        train_name = args.train_folder
        if not (data_dir / train_name).is_dir():
            raise fail(f"No training folder {data_dir / train_name} (use --train-folder to name it).")
        files = [f for f in files if f.parent.parent.name in (train_name, args.valid_folder)]
        splitter: Any = GrandparentSplitter(train_name=train_name, valid_name=args.valid_folder)
    else:
        splitter = RandomSplitter(valid_pct=args.valid_pct, seed=args.seed)
    classes = sorted({parent_label(f) for f in files})
    if len(classes) < 2:
        found = classes[0] if classes else "none"
        raise fail(
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
    close_figures(
        interp.plot_confusion_matrix(fname=report_dir / "confusion_matrix.png"),
        learn.recorder.plot_loss(fname=report_dir / "loss.png"),
    )
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
        raise data_fail(f"No codes file {path}. Give one class name per line, or leave out --codes to infer them.")
    text = path.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    codes = lines if len(lines) > 1 else text.split()
    if not codes:
        raise data_fail(f"The codes file {path} holds no class names: give one per line.")
    return codes


def _segmentation_dls(args: argparse.Namespace) -> Any:
    from ember.vision import Normalize, Resize, SegmentationDataLoaders, aug_transforms

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise data_fail(f"No folder at {data_dir}. Give a folder with {args.images}/ and {args.labels}/ inside.")
    images_dir, labels_dir = data_dir / args.images, data_dir / args.labels
    if not images_dir.is_dir():
        raise data_fail(f"No images folder {images_dir} (name it with --images).")
    if not labels_dir.is_dir():
        raise data_fail(f"No labels folder {labels_dir} (name it with --labels).")
    files = _image_files(images_dir)
    label_func = partial(_mask_path, labels_dir, args.label_suffix)
    missing = [f for f in files if not label_func(f).is_file()]
    if missing:
        shown = ", ".join(f"{f.name} (no {label_func(f)})" for f in missing[:3]) + (" …" if len(missing) > 3 else "")
        raise data_fail(
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
    close_figures(
        learn.recorder.plot_loss(fname=report_dir / "loss.png"),
        learn.show_results(max_n=6, fname=report_dir / "results.png"),
    )
    loss, fg_acc, dice = learn.validate()
    print(
        f"Validation foreground accuracy {fmt(fg_acc)}, Dice {fmt(dice)} (loss {fmt(loss)}) "
        f"in {time.perf_counter() - start:.0f} s"
    )


def _collect_files(paths: Sequence[str]) -> list[Path]:
    from ember.data import get_image_files

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += list(get_image_files(p))
        elif p.exists():
            files.append(p)
        else:
            raise fail(f"No file or folder at {p}.")
    if not files:
        raise fail("No image files to predict.")
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
    from ember.learner.recorder import unique_names

    return [f"{name}.png" for name in unique_names([f.stem for f in files])]


def _mask_palette(n_classes: int) -> list[int]:
    """A PNG palette giving each class id the colour ember draws it in (``show_mask``: tab20 over 0 … n-1)."""
    from matplotlib import colormaps

    cmap, top = colormaps["tab20"], max(1, n_classes - 1)
    palette = []
    for i in range(min(n_classes, 256)):
        palette += [round(255 * c) for c in cmap(i / top)[:3]]
    return palette


def _save_mask(mask: Any, dest: Path, palette: list[int], unknown: int) -> None:
    """Write an ``(H, W)`` tensor of class ids as a PNG whose pixel values are the ids (mode "P"; "I;16" above 255);
    in an 8-bit mask the `unknown` pixels (255: the model did not see them) are transparent."""
    import numpy as np
    from PIL import Image

    ids = mask.numpy()
    if ids.max(initial=0) < 256:
        img = Image.fromarray(ids.astype(np.uint8))
        img.putpalette(palette + [0] * (768 - len(palette)))  # mode "L" -> "P": viewers show colours, values stay ids
        img.save(dest, **({"transparency": unknown} if unknown == 255 and (ids == 255).any() else {}))
    else:
        Image.fromarray(ids.astype(np.uint16)).save(dest)  # mode "I;16"


def _predict_masks(args: argparse.Namespace, learn: Any, files: list[Path]) -> int:
    """Write a mask PNG per file into the output folder, at the file's own size (transparent where the model's crop
    did not reach); print each file's largest classes by share of the pixels the model saw."""
    import torch

    from ember.vision.pixels import unknown_id

    out_dir = Path(args.out_dir) if args.out_dir else Path(f"{Path(args.model).stem}_masks")
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = list(learn.dls.vocab or [])
    names = _mask_names(files)
    palette: list[int] | None = None
    results = []
    for start in range(0, len(files), args.bs):  # a chunk at a time: (B, C, H, W) probabilities add up fast
        chunk = files[start : start + args.bs]
        # each mask at its image's own size, `unknown` where a crop kept the model from seeing the image
        masks, _, probs = learn.predict_masks(chunk, bs=args.bs)
        n_classes = probs.shape[1]
        unknown = unknown_id(n_classes)  # the value predict_masks writes there
        if palette is None:
            palette = _mask_palette(n_classes)
        for f, name, mask in zip(chunk, names[start:], masks):
            dest = out_dir / name
            _save_mask(mask, dest, palette, unknown)
            seen = mask[mask != unknown]  # (n,) the pixels the model saw
            share = torch.bincount(seen, minlength=n_classes).double()[:n_classes] / max(seen.numel(), 1)
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


def _predict_images(args: argparse.Namespace, learn: Any) -> int:
    """Print each image's top classes (or JSON); segmentation models write masks instead (`_predict_masks`)."""
    import torch

    files = _collect_files(args.inputs)
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


# ---------------------------------------------------------------------------------------------------
# options and tasks
# ---------------------------------------------------------------------------------------------------
def _add_image_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="resnet18", help="torchvision, timm or ember model name (default resnet18)")
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start from pretrained weights in the local torchvision/timm cache (default on)",
    )
    p.add_argument("--size", type=int, default=224, help="image size (default 224)")


def _add_classifier_args(p: argparse.ArgumentParser) -> None:
    split = p.add_mutually_exclusive_group()
    split.add_argument("--valid-pct", type=float, default=0.2, help="share of images held out (default 0.2)")
    split.add_argument("--valid-folder", default=None, help="use DATA/<train>/<class> and DATA/<NAME>/<class>")
    p.add_argument("--train-folder", default="train", help="training folder name with --valid-folder")
    _add_image_model_args(p)


def _add_segmentation_args(p: argparse.ArgumentParser) -> None:
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
    _add_image_model_args(p)


def _describe(names: str) -> Any:
    def describe(dls: Any) -> str:
        return (
            f"Data: {len(dls.train_ds)} training and {len(dls.valid_ds)} validation images, "
            f"{names}: {', '.join(map(str, dls.vocab))}"
        )

    return describe


TASKS: dict[str, Task] = {
    "image-classifier": Task(
        help="one class per image, from the sub-folder names",
        data_help="a folder with one sub-folder of images per class",
        add_args=_add_classifier_args,
        dls=_image_dls,
        learner=_image_learner,
        report=_image_report,
        describe=_describe("classes"),
    ),
    "segmentation": Task(
        help="one class per pixel (a U-Net), from images and their masks",
        data_help="a folder with images/, labels/ (one mask per image, pixel value = class id) and codes.txt",
        add_args=_add_segmentation_args,
        dls=_segmentation_dls,
        learner=_segmentation_learner,
        report=_segmentation_report,
        describe=_describe("codes"),
    ),
}


def add_predict_args(p: argparse.ArgumentParser) -> None:
    """The options of ``ember predict`` for image models."""
    p.add_argument(
        "--out-dir",
        default=None,
        help="segmentation models: folder for the mask PNGs (default <model stem>_masks/)",
    )


#: Image models are the fallback: any learner the other kinds do not claim predicts image files.
PREDICTORS = [Predictor(handles=lambda learn: True, predict=_predict_images)]
