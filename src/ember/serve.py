"""`ember serve`: a web page and a JSON API over an exported model, with the Python standard library only.

:func:`make_server` loads a ``.ember`` file (or takes a loaded learner) and returns an HTTP server that answers:

- ``GET /``: one self-contained page (inline CSS and JavaScript, nothing fetched from elsewhere) suited to the
  model: a file picker for image models, a text area for text models, a form with one field per column for
  tables, user and item fields for ratings;
- ``POST /predict``: JSON in, JSON out (an image model also takes the image file itself as the body);
- ``GET /info``: what ``ember info`` shows, with the kind of model, its classes and its inputs, as JSON.

Bad input (not an image, a missing column, malformed JSON, a body over ``max_bytes``) is answered with status 400
and ``{"error": "<what is wrong>"}``; the server keeps running. The server is threaded, but one prediction runs at
a time on the model. :func:`serve` runs it until Ctrl-C. The kinds of models are told apart, and predictions
decoded, as ``ember predict`` does (:func:`ember.cli._common.learner_kind`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import socket
import socketserver
import sys
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ember.core.errors import ConfigError, DataError, EmberError, expected
from ember.serve_page import page

__all__ = ["serve", "make_server", "ModelServer"]

#: The largest request body read by default (20 MiB: a large photo, base64-encoded).
MAX_BYTES = 20 * 2**20
#: A body over the limit is still read (and dropped) up to this size, so that the client receives the 400 answer
#: rather than a reset connection; a larger one is not read at all.
_DRAIN_LIMIT = 64 * 2**20
#: The most words a language model may be asked to write in one request.
_MAX_WORDS = 1000
#: How many users, items or categories the page and ``/info`` list for a field (the API accepts any).
_MAX_CHOICES = 2000
_IMAGE_KINDS = ("image-classifier", "segmentation", "keypoints", "image-to-image", "image-regression", "image")


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
    """A prediction as JSON can hold it: tensors and arrays become lists, numpy scalars numbers, NaN null."""
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
    return value


def _probabilities(classes: Any, probs: Any) -> dict[str, float] | None:
    """``{class: probability}`` (six decimals, as ``ember predict --json``), or None when they do not pair up."""
    values = probs.detach().cpu().float().reshape(-1).tolist()
    if not classes or len(classes) != len(values):
        return None
    return {str(c): round(v, 6) for c, v in zip(classes, values)}


def _png(array: Any, palette: list[int] | None = None) -> str:
    """An ``(H, W)`` or ``(H, W, C)`` uint8 array as a base64 PNG (with `palette`: a mask of class ids)."""
    from PIL import Image

    img = Image.fromarray(array)
    if palette is not None:
        img.putpalette(palette)  # mode "L" -> "P": browsers show colours, the pixel values stay the ids
    buf = io.BytesIO()
    img.save(buf, format="PNG")
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
    text = value.split(",", 1)[1] if value.startswith("data:") else value
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
    except DataError:
        raise DataError(
            f"Expected `{name}` to be an image file (PNG, JPEG, WebP, GIF, BMP, TIFF …); received {len(data):,} "
            f"bytes that are not one (they start with {data[:12]!r})."
        ) from None


def _image_result(kind: str, learn: Any, image: Any, decoded: Any, probs: Any) -> dict[str, Any]:
    """One image's answer: classes and probabilities, a mask, keypoints, an output image or values."""
    import torch

    h, w = image.shape[-2:]
    if kind == "segmentation":
        from ember.cli.vision import _mask_palette  # the colours `ember predict` writes masks in

        codes = [str(c) for c in (learn.dls.vocab or [])]
        mask = decoded.long()  # (H, W) class ids, at the size the model sees
        n = max(len(codes), int(probs.shape[0]), int(mask.max()) + 1)
        palette = _mask_palette(n)
        share = torch.bincount(mask.flatten(), minlength=n).double() / mask.numel()  # (n,)
        order = torch.argsort(share, descending=True).tolist()
        return {
            "mask": _png(mask.numpy().astype("uint8" if n <= 256 else "uint16"), palette if n <= 256 else None),
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
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
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(expected("a whole number (or null: a random draw)", "seed", seed))
    results = []
    with service.lock:
        for prompt in prompts:
            if seed is not None:
                torch.manual_seed(seed)  # per prompt, as `ember predict --seed`
            results.append({"generated": service.learn.predict(prompt, n_words=n_words, temperature=temperature)})
    return results[0] if single else {"predictions": results}


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------
def _category_vocabs(learn: Any) -> dict[str, list[Any]]:
    """The known values of every categorical input column (``#na#`` left out)."""
    from ember.tabular.procs import Categorify

    proc = learn.processor
    cat = next((p for p in proc.procs if isinstance(p, Categorify)), None)
    vocabs = cat.vocabs if cat is not None else {}
    return {c: list(vocabs.get(c, [None])[1:]) for c in proc.input_cat_names}


def _as_known(value: Any, vocab: list[Any]) -> Any:
    """A category as the model knows it: a form's text ``"2008"`` is the integer 2008 of the training data."""
    if value is None or value == "":
        return None  # missing
    if value in vocab or not isinstance(value, str):
        return value
    by_text = {str(v): v for v in vocab}
    return by_text.get(value, value)  # an unseen category stays itself: the model reads it as unknown


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
        values = {c: _as_known(row[c], vocabs[c]) for c in proc.input_cat_names}
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
        where = "the body" if single else f"pairs[{i}]"
        if isinstance(pair, dict):
            if "user" not in pair or "item" not in pair:
                raise DataError(f"{where} needs both `user` and `item` (the {dls.user_name} and the {dls.item_name}).")
            user, item = pair["user"], pair["item"]
        elif isinstance(pair, list) and len(pair) == 2:
            user, item = pair
        else:
            raise DataError(expected("[user, item] or {'user': …, 'item': …}", where, _short(pair)))
        for key, value in (("user", user), ("item", item)):
            if not isinstance(value, (str, int, float)):
                raise DataError(expected(f"a {key} id (a string or a number)", f"{key}", _short(value)))
        known.append((_as_known(user, users), _as_known(item, items)))
    unknown = payload.get("unknown", "error")
    with service.lock:
        ratings, _, _ = learn.predict_batch(known, unknown=unknown)
    results = [{"prediction": round(float(r), 6)} for r in ratings]
    return results[0] if single else {"predictions": results}


_PREDICT: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "tabular": _predict_rows,
    "collab": _predict_ratings,
    "text-classifier": _predict_texts,
    "language-model": _generate,
    **dict.fromkeys(_IMAGE_KINDS, _predict_images),
}


# ---------------------------------------------------------------------------------------------------
# the model behind the server
# ---------------------------------------------------------------------------------------------------
def _recipe_of(learn: Any) -> dict[str, Any]:
    """What an export of `learn` would write in its recipe (for ``/info`` of a learner passed in memory)."""
    from ember._version import __version__
    from ember.core import recipe
    from ember.learner.export import FORMAT_VERSION

    cls = type(learn.model)
    model = getattr(learn, "model_recipe", None) or {"class": f"{cls.__module__}.{cls.__qualname__}"}
    module = type(learn).__module__
    return {
        "ember_version": __version__,
        "format_version": FORMAT_VERSION,
        "learner": type(learn).__name__,
        "application": next(
            (f"ember.{a}" for a in ("vision", "tabular", "collab", "text") if f"ember.{a}." in module), None
        ),
        "model": model,
        "n_params": sum(p.numel() for p in learn.model.parameters()),
        "data": recipe.dump(learn.dls) if recipe.is_registered(learn.dls) else None,
    }


class _Service:
    """A learner with what the server needs: its kind, a lock, the ``/info`` answer and the page."""

    def __init__(self, learn: Any, rec: dict[str, Any], path: str | None, max_bytes: int) -> None:
        from ember.cli._common import info_lines, learner_kind

        self.learn, self.max_bytes, self.lock = learn, max_bytes, threading.Lock()
        self.kind = learner_kind(learn)
        self._check_servable()
        self.image_mode = "RGB"
        if self.kind in _IMAGE_KINDS:
            self.image_mode = getattr(learn.dls.blocks[0], "mode", "RGB")
        self.category_vocabs = _category_vocabs(learn) if self.kind == "tabular" else {}
        self.choices: dict[str, list[Any]] = {}
        if self.kind == "collab":
            dls = learn.dls
            self.choices = {"users": dls.classes[dls.user_name][1:], "items": dls.classes[dls.item_name][1:]}
        name = Path(path).stem if path else type(learn).__name__
        self.info = {"name": name, "kind": self.kind, "learner": type(learn).__name__, **self._inputs()}
        self.info["lines"] = info_lines(rec, path)
        self.page = page(self.info).encode("utf-8")

    def _check_servable(self) -> None:
        """Refuse, at start, a model the page and the API cannot feed: one image must be its only input."""
        learn = self.learn
        if hasattr(learn, "generate") or type(learn).__name__ == "GANLearner":
            raise ConfigError(
                "ember serve does not serve GANs: export the generator's own learner (an image-to-image model) "
                "and serve that."
            )
        if self.kind in _IMAGE_KINDS:
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
        if kind in _IMAGE_KINDS:
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
            categorical = {c: _plain(v[:_MAX_CHOICES]) for c, v in self.category_vocabs.items()}
            inputs = {"categorical": categorical, "continuous": list(proc.cont_names)}
            example = {"row": {**{c: (v[0] if v else None) for c, v in categorical.items()}}}
            example["row"].update(dict.fromkeys(proc.cont_names, 0.0))
            classes = _plain(list(proc.y_vocab)) if proc.y_kind == "category" else None
            return {"classes": classes, "target": list(proc.y_names), "inputs": inputs, "example": example}
        dls = learn.dls  # collab
        users, items = self.choices["users"], self.choices["items"]
        inputs = {
            "user": {"column": dls.user_name, "count": len(users), "values": _plain(users[:_MAX_CHOICES])},
            "item": {"column": dls.item_name, "count": len(items), "values": _plain(items[:_MAX_CHOICES])},
        }
        return {"classes": None, "inputs": inputs, "example": {"user": _plain(users[0]), "item": _plain(items[0])}}

    def predict(self, body: bytes, content_type: str) -> Any:
        """The answer to a ``POST /predict`` body (a JSON object, or an image file for image models)."""
        media = content_type.split(";", 1)[0].strip().lower()
        if media.startswith("image/") or media == "application/octet-stream":
            if self.kind not in _IMAGE_KINDS:
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
        if not isinstance(payload, dict):
            raise DataError(expected("a JSON object", "body", _short(payload)))
        return _PREDICT[self.kind](self, payload)


# ---------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    timeout = 60  # seconds a client may take to send its request before the connection is dropped

    def version_string(self) -> str:
        from ember._version import __version__

        return f"ember/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away: nothing to tell it
            self.close_connection = True

    def _json(self, status: int, answer: Any) -> None:
        self._send(status, json.dumps(answer, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:  # noqa: N802 (the base class's name)
        service = self.server.service
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, service.page, "text/html; charset=utf-8")
        elif path == "/info":
            self._json(200, service.info)
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, f"No page at {path}. This server answers GET /, GET /info and POST /predict.")

    def do_POST(self) -> None:  # noqa: N802 (the base class's name)
        path = urlsplit(self.path).path
        if path != "/predict":
            self._error(404, f"Nothing to POST at {path}: predictions are at POST /predict.")
            return
        try:
            body = self._read_body()
            answer = self.server.service.predict(body, self.headers.get("Content-Type", ""))
        except EmberError as e:
            self._error(400, str(e))
        except Exception:  # a failure of ours, not of the input: logged here, never shown to the client
            traceback.print_exc(file=sys.stderr)
            self._error(500, "The model failed on this input (an internal error; the server's log has the details).")
        else:
            self._json(200, answer)

    def _read_body(self) -> bytes:
        """The request body, at most ``max_bytes`` (larger bodies are drained, then refused)."""
        limit = self.server.service.max_bytes
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise DataError("The request has no Content-Length header: send the body with its length.")
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise DataError(expected("a whole number of bytes", "Content-Length", length_text))
        if length > limit:
            self.close_connection = True
            self._drain(length)
            raise DataError(
                f"The body holds {length:,} bytes, over this server's limit of {limit:,} (max_bytes). Send a smaller "
                "image (or fewer items per request)."
            )
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        """Read and drop a refused body, so that the client is still reading when the answer comes."""
        if length > _DRAIN_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 2**20))
            if not chunk:
                return
            length -= len(chunk)


class ModelServer(ThreadingHTTPServer):
    """The HTTP server :func:`make_server` returns: run it with ``serve_forever()``, stop it with ``shutdown()``
    (from another thread) and ``server_close()``.

    Attributes:
        service: the model behind it (its ``kind``, its ``info`` as ``GET /info`` answers it, its ``learn``).
        log: whether requests are logged on stderr.
    """

    daemon_threads = True  # a hanging client never keeps the process alive

    def __init__(self, address: tuple[str, int], service: _Service, log: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service, self.log = service, log
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the DNS for the host's full name, which can take seconds; it is not needed
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        """The page's address (``127.0.0.1`` when listening on every interface)."""
        host, port = self.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _load(model: Any, device: Any) -> tuple[Any, dict[str, Any], str | None]:
    """``(learner, recipe, path)`` of a ``.ember`` file or a loaded learner, on `device` (None: as it is)."""
    if isinstance(model, (str, os.PathLike)):
        from ember.learner.export import load_learner, read_recipe

        learn = load_learner(model, device="cpu" if device is None else device)
        return learn, read_recipe(model), os.fspath(model)
    if not (hasattr(model, "predict_batch") and hasattr(model, "dls") and hasattr(model, "model")):
        raise ConfigError(expected("a path to a .ember file, or a Learner", "model", type(model).__name__))
    if device is not None:
        from ember.core.device import default_device

        dev = default_device(device)
        model.dls.to(dev)
        model.model.to(dev)
    return model, _recipe_of(model), None


def make_server(
    model: str | os.PathLike | Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    max_bytes: int = MAX_BYTES,
    log: bool = False,
) -> ModelServer:
    """An HTTP server over `model`, listening but not yet answering (for tests and to embed it).

    Args:
        model: a ``.ember`` file (read with :func:`ember.load_learner`) or a loaded learner.
        host: the address to listen on: ``127.0.0.1`` is this machine only; ``0.0.0.0`` is every network
            interface, so that anyone who can reach the machine can use the model (there is no login).
        port: the port; 0 picks a free one (read it from ``server.url``).
        device: where the model runs (``"cpu"``, ``"cuda"``, …); None: the CPU for a file, where it is for a
            learner.
        max_bytes: the largest request body accepted.
        log: print a line per request on stderr.

    Raises:
        ConfigError: a bad argument, a model the server cannot feed (a GAN, several inputs), or an address that
            cannot be listened on (the port is taken).

    >>> server = make_server("birds.ember", port=0)                   # doctest: +SKIP
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()  # doctest: +SKIP
    """
    if not isinstance(host, str) or not host:
        raise ConfigError(expected("an address such as '127.0.0.1' or '0.0.0.0'", "host", host))
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(expected("a port number from 0 to 65535 (0: any free port)", "port", port))
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(expected("a positive whole number of bytes", "max_bytes", max_bytes))
    learn, rec, path = _load(model, device)
    service = _Service(learn, rec, path, max_bytes)
    try:
        return ModelServer((host, port), service, log=log)
    except OSError as e:
        raise ConfigError(
            f"Cannot listen on {host}:{port} ({e.strerror or e}). Choose another port (--port; 0 picks a free one), "
            "or stop the program that holds it."
        ) from e


def serve(
    model: str | os.PathLike | Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    max_bytes: int = MAX_BYTES,
    open_browser: bool = False,
) -> None:
    """Serve `model` on a web page and a JSON API until Ctrl-C (see :func:`make_server` for the arguments).

    Args:
        open_browser: open the page in the default web browser.
    """
    server = make_server(model, host=host, port=port, device=device, max_bytes=max_bytes, log=True)
    info = server.service.info
    print(f"Serving {info['name']} ({info['kind']}) at {server.url}  (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Listening on {host}: anyone who can reach this machine on port {server.server_address[1]} can use it.")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()
