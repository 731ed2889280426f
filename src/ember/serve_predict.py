"""What ``ember serve`` answers: a request's JSON (or image file) decoded for the model, the prediction made under
the model's lock, and the answer written as JSON (classes and probabilities, masks and images as base64 PNGs, values,
generated text). The HTTP server around it is :mod:`ember.serve`."""

from __future__ import annotations

import base64
import binascii
import datetime
import io
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ember.cli._common import IMAGE_KINDS
from ember.core.errors import ConfigError, DataError, expected
from ember.serve_page import page

#: The most words a language model may be asked to write in one request.
_MAX_WORDS = 1000
#: How many users, items or categories the page and ``/info`` list for a field (the API accepts any).
_MAX_CHOICES = 2000
#: The seeds a language model takes (those `torch.manual_seed` takes, from 0).
_MAX_SEED = 2**63


# ---------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------
class _Shown(str):
    """Text that `expected` shows as it is (its repr is itself, not quoted again)."""

    def __repr__(self) -> str:
        return str(self)


def _short(value: Any, n: int = 60) -> str:
    """A value as messages show it: its repr, cut at `n` characters."""
    text = repr(value)
    return _Shown(text if len(text) <= n else text[: n - 1] + "…")


def _plain(value: Any) -> Any:
    """A value as JSON can hold it: tensors and arrays become lists, numpy scalars numbers, NaN null, dates and
    times ISO text (``"2024-01-02T00:00:00"``), any other value its text."""
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):  # pandas' Timestamp, NaT too
        return _date_text(value)
    if getattr(getattr(value, "dtype", None), "kind", "") in ("M", "m"):  # numpy datetime64 / timedelta64
        return [_plain(v) for v in value] if getattr(value, "ndim", 0) else _date_text(value)
    if hasattr(value, "detach"):  # a tensor
        value = value.detach().cpu().tolist()
    elif hasattr(value, "tolist"):  # a numpy array or scalar
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _date_text(value: Any) -> str | None:
    """A date, time or duration as text (ISO for dates and times); None for a missing one (NaT)."""
    if value != value:  # NaT, the only date not equal to itself
        return None
    return value.isoformat() if isinstance(value, (datetime.date, datetime.time)) else str(value)


class _Known:
    """The values of a category (or the users, or the items) the model knows, looked up in constant time.

    A form sends text: ``"2008"`` is the integer 2008 of the training data, ``"2024-01-02T00:00:00"`` (the text
    ``/info`` lists) or ``"2024-01-02"`` the date. Other JSON values are taken as they are.
    """

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.by_text: dict[str, Any] = {}
        for v in values:
            for text in (str(v), _plain(v), _midnight_date(v)):
                if isinstance(text, str):
                    self.by_text.setdefault(text, v)
        self.by_text.update({v: v for v in values if isinstance(v, str)})  # a text category is itself, first

    def __call__(self, value: Any) -> Any:
        if value is None or value == "":
            return None  # missing
        if not isinstance(value, str):
            return value
        return self.by_text.get(value, value)  # an unseen category stays itself: the model reads it as unknown


def _midnight_date(value: Any) -> str | None:
    """``"2024-01-02"`` for a date-time at midnight (with no time zone): what a person types for that day."""
    if isinstance(value, datetime.datetime) and value == value and value.tzinfo is None:
        if value.time() == datetime.time():
            return value.date().isoformat()
    return None


def _probabilities(classes: Any, probs: Any) -> dict[str, float] | None:
    """``{class: probability}`` (six decimals, as ``ember predict --json``), or None when they do not pair up."""
    values = probs.detach().cpu().float().reshape(-1).tolist()
    if not classes or len(classes) != len(values):
        return None
    return {str(c): round(v, 6) for c, v in zip(classes, values)}


def _png(array: Any, palette: list[int] | None = None, transparent: int | None = None) -> str:
    """An ``(H, W)`` or ``(H, W, C)`` uint8 array as a base64 PNG (with `palette`: a mask of class ids, whose
    value `transparent` is drawn transparent)."""
    from PIL import Image

    img = Image.fromarray(array)
    options = {}
    if palette is not None:
        img.putpalette(palette)  # mode "L" -> "P": browsers show colours, the pixel values stay the ids
        if transparent is not None:
            options["transparency"] = transparent
    buf = io.BytesIO()
    img.save(buf, format="PNG", **options)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _items(payload: dict[str, Any], one: str, many: str, what: str, example: str) -> tuple[list[Any], bool]:
    """``(items, single)`` from ``{one: item}`` or ``{many: [items]}``; a DataError naming the keys otherwise."""
    if one in payload and many in payload:
        raise DataError(f"Send either `{one}` or `{many}`, not both.")
    if one in payload:
        return [payload[one]], True
    if many in payload:
        values = payload[many]
        if not isinstance(values, list) or not values:
            raise DataError(expected(f"a non-empty list of {what}", many, _short(values)))
        return values, False
    keys = ", ".join(sorted(payload)) or "none"
    raise DataError(
        f"Expected the JSON body to hold `{one}` ({what}) or `{many}` (a list of them); received the keys: {keys}. "
        f"Example: {example}"
    )


# ---------------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------------
def _base64_bytes(value: Any, name: str) -> bytes:
    """The bytes of a base64 string (a ``data:`` URL too; line breaks are ignored)."""
    if not isinstance(value, str):
        raise DataError(expected("a base64 string of an image file", name, _short(value)))
    text = value
    if value.startswith("data:"):
        _, comma, text = value.partition(",")
        if not comma:
            raise DataError(
                expected(
                    "a base64 string of an image file",
                    name,
                    _short(value, 40),
                    hint="A data: URL holds a comma before the data: data:image/png;base64,<base64>.",
                )
            )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DataError(
            expected("a base64 string of an image file", name, _short(value, 40), hint="It is not valid base64.")
        ) from None


def _decode_image(data: bytes, mode: str, name: str) -> Any:
    """The bytes of an image file as the model reads it: ``uint8 (C, H, W)``."""
    from ember.vision.core import image_to_tensor

    if not data:
        raise DataError(f"`{name}` is empty: send the bytes of an image file (PNG, JPEG, WebP …).")
    try:
        return image_to_tensor(data, mode)
    except DataError as e:
        raise DataError(
            f"Expected `{name}` to be an image file (PNG, JPEG, WebP, GIF, BMP, TIFF …) that can be read; received "
            f"{len(data):,} bytes that cannot (they start with {data[:12]!r}): {e}"
        ) from None


def _segmentation_result(learn: Any, image: Any, decoded: Any, probs: Any) -> dict[str, Any]:
    """A mask over the image sent, at its size: class ids, 255 (65535 past 255 classes) where the model did not
    see it."""
    import torch

    from ember.cli.vision import _mask_palette  # the colours `ember predict` writes masks in
    from ember.vision.pixels import input_box, mask_in_image, unknown_id

    h, w = image.shape[-2:]
    codes = [str(c) for c in (learn.dls.vocab or [])]
    model_mask = decoded.long()  # (h_in, w_in) class ids, at the size the model sees
    n = max(len(codes), int(probs.shape[0]), int(model_mask.max()) + 1)
    unknown = unknown_id(n)
    small = unknown == 255  # 8-bit ids, 255 left free for the unknown pixels
    item_map = learn._encode_and_map([image], True)[1][0]
    mask = mask_in_image(model_mask, input_box(item_map, h, w), h, w, unknown)  # (H, W)
    seen = mask[mask != unknown]
    share = torch.bincount(seen, minlength=n).double()[:n] / max(seen.numel(), 1)  # (n,) of the pixels seen
    order = torch.argsort(share, descending=True).tolist()
    palette = _mask_palette(n)
    if small:
        image_png = _png(mask.numpy().astype("uint8"), palette + [0] * (768 - len(palette)), transparent=unknown)
    else:
        image_png = _png(mask.numpy().astype("uint16"))
    return {
        "mask": image_png,
        "width": int(w),
        "height": int(h),
        "unknown": unknown,
        "classes": [
            {"label": codes[i] if i < len(codes) else str(i), "share": round(float(share[i]), 6)}
            for i in order
            if share[i] > 0
        ],
        "colors": {
            (codes[i] if i < len(codes) else str(i)): "#{:02x}{:02x}{:02x}".format(*palette[3 * i : 3 * i + 3])
            for i in range(min(n, 256))
        },
    }


def _image_result(kind: str, learn: Any, image: Any, decoded: Any, probs: Any) -> dict[str, Any]:
    """One image's answer: classes and probabilities, a mask, keypoints, an output image or values."""
    import torch

    h, w = image.shape[-2:]
    if kind == "segmentation":
        return _segmentation_result(learn, image, decoded, probs)
    if kind == "keypoints":  # (N, 2) (x, y) pixels of the image sent
        points = [[round(float(x), 2), round(float(y), 2)] for x, y in decoded.reshape(-1, 2).tolist()]
        return {"points": points, "width": int(w), "height": int(h)}
    if kind == "image-to-image":  # (C, H, W) floats in [0, 1]
        out = (decoded.float().clamp(0, 1) * 255).round().to(torch.uint8)
        array = out[0].numpy() if out.shape[0] == 1 else out.permute(1, 2, 0).numpy()  # (H, W) or (H, W, C)
        return {"image": _png(array), "width": int(out.shape[-1]), "height": int(out.shape[-2])}
    result = {"prediction": _plain(decoded)}
    probabilities = _probabilities(learn.dls.vocab, probs) if kind == "image-classifier" else None
    if probabilities is not None:
        result["probabilities"] = probabilities
    return result


def _predict_images(service: _Service, payload: dict[str, Any]) -> Any:
    values, single = _items(payload, "image", "images", "base64 of an image file", '{"image": "<base64>"}')
    names = ["image"] if single else [f"images[{i}]" for i in range(len(values))]
    images = [_decode_image(_base64_bytes(v, n), service.image_mode, n) for v, n in zip(values, names)]
    return _image_answers(service, images, single)


def _image_answers(service: _Service, images: list[Any], single: bool) -> Any:
    with service.lock:
        decoded, _, probs = service.learn.predict_batch(images)
    results = [_image_result(service.kind, service.learn, x, d, p) for x, d, p in zip(images, decoded, probs)]
    return results[0] if single else {"predictions": results}


# ---------------------------------------------------------------------------------------------------
# texts
# ---------------------------------------------------------------------------------------------------
def _texts(payload: dict[str, Any], example: str) -> tuple[list[str], bool]:
    texts, single = _items(payload, "text", "texts", "a text", example)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(expected("a text (a JSON string)", "text" if single else f"texts[{i}]", _short(t)))
    return texts, single


def _predict_texts(service: _Service, payload: dict[str, Any]) -> Any:
    texts, single = _texts(payload, '{"text": "a text to classify"}')
    learn = service.learn
    with service.lock:
        decoded, _, probs = learn.predict_batch(texts)
    results = []
    for d, p in zip(decoded, probs):
        result = {"prediction": _plain(d)}
        probabilities = _probabilities(learn.dls.classes, p)
        if probabilities is not None:
            result["probabilities"] = probabilities
        results.append(result)
    return results[0] if single else {"predictions": results}


def _generate(service: _Service, payload: dict[str, Any]) -> Any:
    import torch

    prompts, single = _texts(payload, '{"text": "a prompt", "n_words": 20, "temperature": 1.0}')
    n_words, temperature, seed = payload.get("n_words", 20), payload.get("temperature", 1.0), payload.get("seed")
    if isinstance(n_words, bool) or not isinstance(n_words, int) or not 0 <= n_words <= _MAX_WORDS:
        raise ConfigError(expected(f"a whole number from 0 to {_MAX_WORDS}", "n_words", n_words))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_SEED):
        raise ConfigError(expected("a whole number from 0 to 2**63 - 1 (or null: a random draw)", "seed", seed))
    learn = service.learn
    results = []
    with service.lock:
        for prompt in prompts:
            if seed is None:
                results.append({"generated": learn.predict(prompt, n_words=n_words, temperature=temperature)})
                continue
            # per prompt, as `ember predict --seed`; on forked generators, so that a client's seed leaves the
            # process's random state (a user's own, under make_server) as it was
            with torch.random.fork_rng(devices=_cuda_devices(learn)):
                torch.manual_seed(seed)
                results.append({"generated": learn.predict(prompt, n_words=n_words, temperature=temperature)})
    return results[0] if single else {"predictions": results}


def _cuda_devices(learn: Any) -> list[int]:
    """The CUDA device the model is on, as `torch.random.fork_rng` takes it (none for another device)."""
    import torch

    device = next((p.device for p in learn.model.parameters()), torch.device("cpu"))
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------
def _category_vocabs(learn: Any) -> dict[str, _Known]:
    """The known values of every categorical input column (``#na#`` left out)."""
    from ember.tabular.procs import Categorify

    proc = learn.processor
    cat = next((p for p in proc.procs if isinstance(p, Categorify)), None)
    vocabs = cat.vocabs if cat is not None else {}
    return {c: _Known(list(vocabs.get(c, [None])[1:])) for c in proc.input_cat_names}


def _as_number(value: Any, col: str, where: str) -> float:
    if value is None or value == "":
        return float("nan")  # missing: filled as in training
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(
            f"The column {col!r} of {where} holds {_short(value)}: the model reads a number there (or null)."
        ) from None


def _predict_rows(service: _Service, payload: dict[str, Any]) -> Any:
    import pandas as pd

    learn = service.learn
    proc = learn.processor
    rows, single = _items(payload, "row", "rows", "an object of column values", '{"row": {"column": "value"}}')
    vocabs = service.category_vocabs
    needed = [*proc.input_cat_names, *proc.cont_names]
    table = []
    for i, row in enumerate(rows):
        where = "row" if single else f"rows[{i}]"
        if not isinstance(row, dict):
            raise DataError(expected("an object of column values", where, _short(row)))
        lacking = [c for c in needed if c not in row]
        if lacking:
            raise DataError(
                f"{where} lacks the column(s) {', '.join(map(repr, lacking))}; the model reads "
                f"{', '.join(map(repr, needed))} (null for a missing value; other keys are ignored)."
            )
        values = {c: vocabs[c](row[c]) for c in proc.input_cat_names}
        values.update({c: _as_number(row[c], c, where) for c in proc.cont_names})
        table.append(values)
    with service.lock:
        answers, _, probs = learn.predict_batch(pd.DataFrame(table, columns=needed))
    results = []
    for answer, p in zip(answers, probs):
        if proc.y_kind == "category":
            result = {"prediction": _plain(answer), "probabilities": _probabilities(proc.y_vocab, p)}
        else:
            values = answer if isinstance(answer, list) else [answer]
            result = {"prediction": _plain(answer), "values": dict(zip(proc.y_names, _plain(values)))}
        results.append(result)
    return results[0] if single else {"predictions": results}


# ---------------------------------------------------------------------------------------------------
# ratings
# ---------------------------------------------------------------------------------------------------
def _predict_ratings(service: _Service, payload: dict[str, Any]) -> Any:
    learn = service.learn
    dls = learn.dls
    users, items = service.choices["users"], service.choices["items"]
    if "pairs" in payload:
        if "user" in payload or "item" in payload:
            raise DataError("Send either `user` and `item` (one pair), or `pairs` (a list of them), not both.")
        pairs = payload["pairs"]
        if not isinstance(pairs, list) or not pairs:
            raise DataError(expected("a non-empty list of [user, item] pairs", "pairs", _short(pairs)))
        single = False
    elif "user" in payload or "item" in payload:
        pairs, single = [payload], True
    else:
        raise DataError(
            "Expected the JSON body to hold `user` and `item`, or `pairs` (a list of [user, item]); received the "
            f'keys: {", ".join(sorted(payload)) or "none"}. Example: {{"user": 42, "item": "Alien (1979)"}}'
        )
    known = []
    for i, pair in enumerate(pairs):
        where = "The body" if single else f"pairs[{i}]"
        if isinstance(pair, dict):
            if "user" not in pair or "item" not in pair:
                raise DataError(f"{where} needs both `user` and `item` (the {dls.user_name} and the {dls.item_name}).")
            user, item = pair["user"], pair["item"]
        elif isinstance(pair, list) and len(pair) == 2:
            user, item = pair
        else:
            raise DataError(expected("[user, item] or {'user': …, 'item': …}", where, _short(pair)))
        for key, value in (("user", user), ("item", item)):
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                what = "a user id" if key == "user" else "an item id"
                raise DataError(expected(f"{what} (a string or a number)", key, _short(value)))
        known.append((users(user), items(item)))
    unknown = payload.get("unknown", "error")
    try:
        with service.lock:
            ratings, _, _ = learn.predict_batch(known, unknown=unknown)
    except DataError as e:  # the library's advice, in the words of a JSON body
        raise DataError(str(e).replace("Pass unknown='mean'", 'Send "unknown": "mean" in the body')) from None
    results = [{"prediction": round(float(r), 6)} for r in ratings]
    return results[0] if single else {"predictions": results}


_PREDICT: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "tabular": _predict_rows,
    "collab": _predict_ratings,
    "text-classifier": _predict_texts,
    "language-model": _generate,
    **dict.fromkeys(IMAGE_KINDS, _predict_images),
}


# ---------------------------------------------------------------------------------------------------
# the model behind the server
# ---------------------------------------------------------------------------------------------------
class _Service:
    """A learner with what the server needs: its kind, a lock, the ``/info`` answer and the page."""

    def __init__(self, learn: Any, rec: dict[str, Any], shown: str | None, local: Path | None, max_bytes: int) -> None:
        """The service of `learn`, whose recipe is `rec`.

        Args:
            shown: the model file as ``/info`` names it (its name, not where it is; an ``hf://`` address as given).
            local: where the file is on this machine (for its size), or None for a learner in memory.
        """
        from ember.cli._common import info_lines, learner_kind

        self.learn, self.max_bytes, self.lock = learn, max_bytes, threading.Lock()
        self.kind = learner_kind(learn)
        self._check_servable()
        self.image_mode = "RGB"
        if self.kind in IMAGE_KINDS:
            self.image_mode = getattr(learn.dls.blocks[0], "mode", "RGB")
        self.category_vocabs = _category_vocabs(learn) if self.kind == "tabular" else {}
        self.choices: dict[str, _Known] = {}
        if self.kind == "collab":
            dls = learn.dls
            users, items = dls.classes[dls.user_name][1:], dls.classes[dls.item_name][1:]
            self.choices = {"users": _Known(list(users)), "items": _Known(list(items))}
        name = Path(shown).stem if shown else type(learn).__name__
        self.info = {"name": name, "kind": self.kind, "learner": type(learn).__name__, **self._inputs()}
        self.info["lines"] = info_lines(rec, shown, local)
        self.page = page(self.info).encode("utf-8")

    def _check_servable(self) -> None:
        """Refuse, at start, a model the page and the API cannot feed: one image must be its only input."""
        learn = self.learn
        if hasattr(learn, "generate") or type(learn).__name__ == "GANLearner":
            raise ConfigError(
                "ember serve does not serve GANs: export the generator's own learner (an image-to-image model) "
                "and serve that."
            )
        if self.kind in IMAGE_KINDS:
            blocks = getattr(learn.dls, "blocks", None) or []
            inputs = [getattr(b, "kind", None) for b in blocks[: getattr(learn.dls, "n_inp", 1)]]
            if inputs != ["image"]:
                raise ConfigError(
                    "ember serve serves models whose input is one image, a text, a table row or a (user, item) "
                    f"pair; this {type(learn).__name__}'s inputs are {inputs or 'unknown (no blocks)'}."
                )

    def _inputs(self) -> dict[str, Any]:
        """The classes and what a request holds, for ``/info`` and the page."""
        learn, kind = self.learn, self.kind
        if kind in IMAGE_KINDS:
            classes = [str(c) for c in learn.dls.vocab] if learn.dls.vocab else None
            return {
                "classes": classes,
                "inputs": {"image": {"mode": self.image_mode}},
                "example": {"image": "<base64 of an image file>"},
            }
        if kind == "text-classifier":
            return {"classes": list(learn.dls.classes), "inputs": {"text": "str"}, "example": {"text": "a text"}}
        if kind == "language-model":
            inputs = {"text": "str", "n_words": "int", "temperature": "float", "seed": "int or null"}
            return {
                "classes": None,
                "inputs": inputs,
                "example": {"text": "a prompt", "n_words": 20, "temperature": 1.0},
            }
        if kind == "tabular":
            proc = learn.processor
            categorical = {c: _plain(v.values[:_MAX_CHOICES]) for c, v in self.category_vocabs.items()}
            inputs = {"categorical": categorical, "continuous": list(proc.cont_names)}
            example = {"row": {**{c: (v[0] if v else None) for c, v in categorical.items()}}}
            example["row"].update(dict.fromkeys(proc.cont_names, 0.0))
            classes = _plain(list(proc.y_vocab)) if proc.y_kind == "category" else None
            return {"classes": classes, "target": list(proc.y_names), "inputs": inputs, "example": example}
        dls = learn.dls  # collab
        users, items = self.choices["users"].values, self.choices["items"].values
        inputs = {
            "user": {"column": dls.user_name, "count": len(users), "values": _plain(users[:_MAX_CHOICES])},
            "item": {"column": dls.item_name, "count": len(items), "values": _plain(items[:_MAX_CHOICES])},
        }
        return {"classes": None, "inputs": inputs, "example": {"user": _plain(users[0]), "item": _plain(items[0])}}

    def predict(self, body: bytes, content_type: str) -> Any:
        """The answer to a ``POST /predict`` body (a JSON object, or an image file for image models)."""
        media = content_type.split(";", 1)[0].strip().lower()
        if media.startswith("image/") or media == "application/octet-stream":
            if self.kind not in IMAGE_KINDS:
                raise DataError(
                    f"This {self.kind} model reads JSON, not a {media} body. Send Content-Type application/json "
                    f"with a body like {json.dumps(self.info['example'])}."
                )
            return _image_answers(self, [_decode_image(body, self.image_mode, "body")], single=True)
        if media == "multipart/form-data":
            raise DataError(
                "Form uploads are not read: send the image file itself as the body (with its image Content-Type), "
                'or JSON {"image": "<base64>"}.'
            )
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise DataError(
                f"The body is not valid JSON ({e}). Send a JSON object like {json.dumps(self.info['example'])}."
            ) from None
        except RecursionError:
            raise DataError(
                "The body is JSON nested too deeply to read. Send a JSON object like "
                f"{json.dumps(self.info['example'])}."
            ) from None
        if not isinstance(payload, dict):
            raise DataError(expected("a JSON object", "body", _short(payload)))
        return _PREDICT[self.kind](self, payload)
