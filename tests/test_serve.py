"""`ember serve`: the page, the JSON API and its refusals, over tiny exported image, table, text and ratings models."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ember
from ember.cli import main
from ember.core.errors import ConfigError
from ember.serve import make_server, serve
from ember.serve_page import page
from ember.serve_predict import _Known, _plain
from ember.vision.pixels import input_box, mask_in_image


def make_folder(root, n=6, size=16):
    rng = np.random.default_rng(0)
    for name, color in (("blue", (20, 40, 220)), ("red", (220, 30, 30))):
        (root / name).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(np.array(color) + rng.integers(-60, 60, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


@contextlib.contextmanager
def running(model, **kwargs):
    """A server over `model` on a free port, answering from a thread while the block runs."""
    server = make_server(model, port=0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def call(server, path, body=None, content_type="application/json", method=None, headers=None):
    """``(status, content type, body)`` of a GET (no body) or a POST (or `method`); a dict body is sent as JSON."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    headers = {**({"Content-Type": content_type} if body is not None else {}), **(headers or {})}
    request = urllib.request.Request(server.url + path.lstrip("/"), data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def raw(server, data, then=None):
    """What the server answers, up to its closing the connection, to the bytes `data` sent as they are (and `then`,
    sent once it has answered a first time)."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        answer = sock.recv(65536)
        if then is not None:
            sock.sendall(then)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def post(server, body, content_type="application/json"):
    status, ctype, data = call(server, "/predict", body, content_type)
    assert ctype.startswith("application/json")
    return status, json.loads(data)


def b64(path):
    return base64.b64encode(path.read_bytes()).decode()


# ---------------------------------------------------------------------------------------------------
# an image classifier
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    from ember.vision import ImageDataLoaders, Resize, vision_learner

    root = tmp_path_factory.mktemp("serve_img")
    data = make_folder(root / "data")
    torch.manual_seed(0)
    dls = ImageDataLoaders.from_folder(data, valid_pct=0.25, seed=0, item_tfms=[Resize(16)], bs=4)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, path=root)
    learn.export(root / "colors.ember", verbose=False)
    return root / "colors.ember", data


@pytest.fixture(scope="module")
def image_server(image_model):
    with running(image_model[0]) as server:
        yield server


def test_page_names_the_classes_and_needs_nothing_from_elsewhere(image_server):
    status, ctype, page = call(image_server, "/")
    text = page.decode()
    assert status == 200 and ctype == "text/html; charset=utf-8"
    assert "Classes (2): blue, red" in text and "colors" in text and "image-classifier" in text
    assert 'type: "file"' in text and "ondrop" in text  # a file picker and drag-and-drop
    assert not re.search(r"(src|href)=\S*https?:|url\(|@import|<link", text)  # inline CSS and JS: offline works


def test_an_image_file_as_the_body_gets_the_library_prediction(image_model, image_server):
    path = image_model[1] / "red" / "0.png"
    label, _, probs = ember.load_learner(image_model[0]).predict(path)
    status, answer = post(image_server, path.read_bytes(), "image/png")
    assert status == 200 and answer["prediction"] == label
    assert list(answer["probabilities"]) == ["blue", "red"]
    assert list(answer["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-5)


def test_a_batch_of_base64_images_is_predict_batch(image_model, image_server):
    files = [image_model[1] / "blue" / "1.png", image_model[1] / "red" / "2.png", image_model[1] / "red" / "3.png"]
    labels, _, probs = ember.load_learner(image_model[0]).predict_batch(files)
    status, answer = post(image_server, {"images": [b64(f) for f in files]})
    assert status == 200 and [a["prediction"] for a in answer["predictions"]] == labels
    got = [list(a["probabilities"].values()) for a in answer["predictions"]]
    assert np.allclose(got, probs.numpy(), atol=1e-5)
    single = post(image_server, {"image": "data:image/png;base64," + b64(files[1])})[1]  # a data: URL works too
    assert single == answer["predictions"][1]


@pytest.mark.parametrize(
    "body,content_type,message",
    [
        (b"GIF89a but not really", "image/gif", "Expected `body` to be an image file"),
        ({"image": base64.b64encode(b"plain text").decode()}, "application/json", "Expected `image` to be an image"),
        ({"image": "not base64 !"}, "application/json", "It is not valid base64"),
        (b'{"image": ', "application/json", "The body is not valid JSON"),
        ({"text": "a cat"}, "application/json", "received the keys: text"),
        (b"[1, 2]", "application/json", "Expected `body` to be a JSON object"),
        ({"images": []}, "application/json", "Expected `images` to be a non-empty list"),
        ({"image": "data:image/png;base64"}, "application/json", "A data: URL holds a comma before the data"),
        (b'{"a": ' + b"[" * 40000 + b"]" * 40000 + b"}", "application/json", "JSON nested too deeply"),
    ],
)
def test_bad_input_gets_400_with_the_message_and_the_server_goes_on(image_server, body, content_type, message):
    status, answer = post(image_server, body, content_type)
    assert status == 400 and message in answer["error"] and "Traceback" not in answer["error"]
    assert call(image_server, "/info")[0] == 200


def test_an_unreadable_image_is_told_why(image_server):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    status, answer = post(image_server, buf.getvalue()[:3000], "image/png")  # a PNG cut short
    assert status == 400 and "Expected `body` to be an image file" in answer["error"]
    assert "image file is truncated" in answer["error"]  # the reason the image library gave


def test_a_body_over_max_bytes_is_refused(image_model):
    with running(image_model[0], max_bytes=1000) as server:
        status, answer = post(server, b"\0" * 5000, "image/png")
        assert status == 400 and "5,000 bytes, over this server's limit of 1,000" in answer["error"]
        status, answer = post(server, (image_model[1] / "red" / "0.png").read_bytes(), "image/png")  # under: fine
        assert status == 200 and answer["prediction"] in ("blue", "red")
        # a client that asks before sending (curl over 1 MB) is refused before the body, or told to go on at once
        head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nConnection: close\r\n"
        head += "Expect: 100-continue\r\n"
        answer = raw(server, (head + "Content-Length: 5000\r\n\r\n").encode())
        assert answer.startswith(b"HTTP/1.1 413 ") and b"5,000 bytes, over this server's limit" in answer
        png = (image_model[1] / "red" / "0.png").read_bytes()
        answer = raw(server, (head + f"Content-Length: {len(png)}\r\n\r\n").encode(), then=png)
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK") and b'"prediction"' in answer


def test_unknown_paths_are_404_and_internal_failures_500_without_details(image_model, image_server):
    status, _, body = call(image_server, "/nothing")
    assert status == 404 and "POST /predict" in json.loads(body)["error"]
    for method, path, allowed in (("GET", "/predict", "POST"), ("PUT", "/predict", "POST"), ("OPTIONS", "/", "GET")):
        request = urllib.request.Request(image_server.url + path.lstrip("/"), method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=20)
        error = json.loads(refused.value.read())["error"]
        assert refused.value.code == 405 and refused.value.headers["Allow"].startswith(allowed)
        assert f"{method} is not answered at {path}: it takes {allowed}" in error
    request = urllib.request.Request(image_server.url + "info", method="HEAD")  # a health check
    with urllib.request.urlopen(request, timeout=20) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) > 100 and r.read() == b""
    learn = image_server.service.learn
    good = learn.predict_batch
    learn.predict_batch = lambda items: 1 / 0  # a failure of the server's own, not of the input
    try:
        status, answer = post(image_server, (image_model[1] / "red" / "0.png").read_bytes(), "image/png")
    finally:
        learn.predict_batch = good
    assert status == 500 and "internal error" in answer["error"] and "ZeroDivision" not in answer["error"]


def test_one_prediction_at_a_time(image_model, image_server):
    learn = image_server.service.learn
    good, active, most = learn.predict_batch, [0], [0]

    def slow(items):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.05)
        active[0] -= 1
        return good(items)

    learn.predict_batch = slow
    body = (image_model[1] / "blue" / "0.png").read_bytes()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(post(image_server, body, "image/png"))) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        learn.predict_batch = good
    assert [status for status, _ in answers] == [200] * 4 and most[0] == 1


def test_connections_past_the_limit_are_answered_503_and_slots_come_back(image_model, monkeypatch):
    from ember.serve import ModelServer

    monkeypatch.setattr(ModelServer, "max_connections", 1)
    with running(image_model[0]) as server:
        stalled = socket.create_connection(server.server_address[:2], timeout=10)  # holds the only slot
        try:
            time.sleep(0.1)
            answer = raw(server, b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503") and b'"error"' in answer
        finally:
            stalled.close()
        for _ in range(50):  # the stalled connection's thread ends and gives its slot back
            status = call(server, "/info")[0]
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200


def test_info_is_what_ember_info_prints(image_model, image_server, capsys):
    _, ctype, body = call(image_server, "/info")
    info = json.loads(body)
    assert ctype.startswith("application/json")
    assert info["kind"] == "image-classifier" and info["classes"] == ["blue", "red"]
    assert info["inputs"] == {"image": {"mode": "RGB"}}
    capsys.readouterr()
    assert main(["info", str(image_model[0])]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"File: {image_model[0]} (")  # the command shows the path typed
    assert info["lines"] == [printed[0].replace(str(image_model[0]), "colors.ember"), *printed[1:]]  # /info its name


def test_only_requests_addressed_to_this_machine_are_answered_on_loopback(image_server):
    status, _, body = call(image_server, "/info", headers={"Host": "rebind.example:8000"})  # DNS rebinding
    assert status == 403 and "'rebind.example:8000'" in json.loads(body)["error"]
    status, _, body = call(image_server, "/predict", {"image": "x"}, headers={"Host": "rebind.example"})
    assert status == 403
    for host in ("localhost:8000", "127.0.0.1", "[::1]:80"):
        assert call(image_server, "/info", headers={"Host": host})[0] == 200


def test_the_log_escapes_control_characters(image_model, capsys):
    with running(image_model[0], log=True) as server:
        raw(server, b"GET /\x1b[2J\x1b[31mFAKE HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J\\x1b[31mFAKE" in err


def test_the_page_escapes_what_it_shows_and_fills_each_placeholder_once():
    info = {"name": "x%MODEL%<i>", "kind": "image-classifier", "classes": ["<script>alert(1)</script>", "a%TITLE%"]}
    text = page(info)
    assert "<title>x%MODEL%&lt;i&gt; · ember</title>" in text and "<h1>x%MODEL%&lt;i&gt;</h1>" in text
    assert "Classes (2): &lt;script&gt;alert(1)&lt;/script&gt;, a%TITLE%</p>" in text
    assert "<script>alert" not in text and "</script><" not in text.split("const MODEL = ")[1].split(";</script>")[0]
    assert text.count("const MODEL = ") == 1 and json.loads(text.split("const MODEL = ")[1].split(";</script>")[0])


def test_values_json_cannot_hold_become_text_and_form_texts_find_the_category():
    day = pd.Timestamp("2024-01-02")
    assert _plain([day, np.datetime64("2024-01-03"), pd.NaT, float("nan"), np.int64(4), {"k": np.float32(0.5)}]) == [
        "2024-01-02T00:00:00",
        "2024-01-03",
        None,
        None,
        4,
        {"k": 0.5},
    ]
    known = _Known([2007, 2008, "2008", day])
    assert known("2007") == 2007 and known(2008) == 2008 and known("2008") == "2008"  # a text category is itself
    assert known("2024-01-02T00:00:00") is day and known("2024-01-02") is day and known("2024-01-02 00:00:00") is day
    assert known("1999") == "1999" and known("") is None and known(None) is None  # unseen stays; "" is missing
    big = _Known(list(range(50_000)))
    start = time.perf_counter()
    assert [big(str(i)) for i in range(0, 50_000, 10)] == list(range(0, 50_000, 10))
    assert time.perf_counter() - start < 1.0  # a lookup, not a scan of the 50,000 values (that took seconds)


def test_a_mask_is_mapped_back_to_the_pixels_of_the_image_sent():
    mask = torch.arange(16).reshape(4, 4)  # (4, 4) the model's view of the centre 6 x 6 of a 10 x 6 image
    out = mask_in_image(mask, (2.0, 0.0, 8.0, 6.0), 6, 10, 255)  # (6, 10)
    assert out.shape == (6, 10)
    assert (out[:, :2] == 255).all() and (out[:, 8:] == 255).all()  # cut off by the crop: unknown
    cols = [int((x + 0.5 - 2) * 4 / 6) for x in range(2, 8)]  # nearest neighbour: the mask pixel of each centre
    rows = [int((y + 0.5) * 4 / 6) for y in range(6)]
    assert out[:, 2:8].tolist() == [[int(mask[r, c]) for c in cols] for r in rows]


def _mask_path(labels, image):
    return labels / image.name


def test_a_segmentation_learner_in_memory_answers_its_mask(tmp_path):
    from functools import partial

    from ember.data import get_image_files
    from ember.data.builtin import shapes_segmentation
    from ember.vision import Resize, SegmentationDataLoaders, unet_learner

    data = shapes_segmentation(n_images=4, size=16, path=tmp_path / "shapes")
    codes = (data / "codes.txt").read_text().split()
    files = get_image_files(data / "images")
    dls = SegmentationDataLoaders.from_label_func(
        data, files, partial(_mask_path, data / "labels"), codes=codes, valid_pct=0.25, seed=0, item_tfms=[Resize(16)]
    )
    torch.manual_seed(0)
    learn = unet_learner(dls, "xresnet_tiny", pretrained=False, path=tmp_path)
    mask, _, _ = learn.predict(files[0])  # (16, 16) class ids
    with running(learn) as server:  # a learner, not a file
        info = json.loads(call(server, "/info")[2])
        assert info["kind"] == "segmentation" and info["classes"] == codes
        assert "Block: MaskBlock (4 codes: background, square, disc, triangle)" in info["lines"]
        status, answer = post(server, files[0].read_bytes(), "image/png")
    assert status == 200 and (answer["width"], answer["height"]) == (16, 16)
    png = Image.open(io.BytesIO(base64.b64decode(answer["mask"])))
    assert png.mode == "P" and np.array_equal(np.asarray(png), mask.numpy())  # the pixel values are the class ids
    shares = {c["label"]: c["share"] for c in answer["classes"]}
    expected = {codes[i]: (mask == i).float().mean().item() for i in range(4) if (mask == i).any()}
    assert shares == pytest.approx(expected, abs=1e-6) and set(answer["colors"]) == set(codes)

    # a 40 x 24 photo: Resize(16) shows the model its centre 24 x 24 (columns 8 to 32), at 16 x 16
    wide = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (3, 24, 40), dtype=np.uint8))
    assert input_box(learn._encode_and_map([wide], True)[1][0], 24, 40) == pytest.approx((8.0, 0.0, 32.0, 24.0))
    buf = io.BytesIO()
    Image.fromarray(wide.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    small, _, _ = learn.predict(wide)  # (16, 16)
    with running(learn) as server:
        status, answer = post(server, buf.getvalue(), "image/png")
    assert status == 200 and (answer["width"], answer["height"], answer["unknown"]) == (40, 24, 255)
    png = Image.open(io.BytesIO(base64.b64decode(answer["mask"])))
    got = np.asarray(png)  # (24, 40)
    assert png.info["transparency"] == 255 and (got[:, :8] == 255).all() and (got[:, 32:] == 255).all()
    expected = mask_in_image(small, (8.0, 0.0, 32.0, 24.0), 24, 40, 255).numpy()
    masks, _, _ = learn.predict_masks([wide, files[0]])  # the same mapping, for many items at once
    assert np.array_equal(masks[0].numpy(), expected) and masks[1].shape == (16, 16)
    masks, _, _ = learn.predict_masks([wide], unknown=-1)
    assert (masks[0][:, :8] == -1).all() and np.array_equal(masks[0][:, 8:32].numpy(), expected[:, 8:32])
    for bad in (3, True, 2.5):  # a class id (4 classes), or not an int
        with pytest.raises(ConfigError, match="unknown"):
            learn.predict_masks([wide], unknown=bad)
    assert np.array_equal(got, expected)
    seen = expected[:, 8:32]
    shares = {c["label"]: c["share"] for c in answer["classes"]}
    assert shares == pytest.approx({codes[i]: (seen == i).mean() for i in range(4) if (seen == i).any()}, abs=1e-6)


# ---------------------------------------------------------------------------------------------------
# a table
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    from ember.data.builtin import penguins
    from ember.tabular import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner

    root = tmp_path_factory.mktemp("serve_tab")
    df = penguins().iloc[::3]
    dls = TabularDataLoaders.from_df(
        df,
        y_names="species",
        cat_names=["island", "year"],  # year: integer categories
        cont_names=["bill_length_mm", "flipper_length_mm"],
        procs=[Categorify, FillMissing, Normalize],
        seed=0,
        bs=16,
        path=root,
    )
    torch.manual_seed(0)
    tabular_learner(dls, layers=[8]).export(root / "species.ember", verbose=False)
    return root / "species.ember"


ROW = {"island": "Dream", "year": 2008, "bill_length_mm": 48.0, "flipper_length_mm": 195.0, "note": "ignored"}


def test_table_page_has_a_field_per_column_and_predictions_are_the_library_ones(table_model):
    learn = ember.load_learner(table_model)
    label, _, probs = learn.predict(ROW)
    with running(table_model) as server:
        page = call(server, "/")[2].decode()
        assert "Classes (3): Adelie, Chinstrap, Gentoo" in page
        info = json.loads(call(server, "/info")[2])
        assert info["inputs"]["categorical"] == {"island": ["Biscoe", "Dream", "Torgersen"], "year": [2007, 2008, 2009]}
        assert info["inputs"]["continuous"] == ["bill_length_mm", "flipper_length_mm"]
        status, answer = post(server, {"row": ROW})
        assert status == 200 and answer["prediction"] == label
        assert list(answer["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-5)
        # a form's texts: "2008" is the category 2008, "48" the number 48; "" and null are missing values
        as_text = {**ROW, "year": "2008", "bill_length_mm": "48"}
        assert post(server, {"row": as_text})[1] == answer
        rows = [ROW, {**ROW, "island": "Biscoe", "flipper_length_mm": None}, {**ROW, "year": ""}]
        labels, _, many = learn.predict_batch(pd.DataFrame(rows).drop(columns="note"))
        status, answer = post(server, {"rows": rows})
        assert status == 200 and [a["prediction"] for a in answer["predictions"]] == labels
        got = [list(a["probabilities"].values()) for a in answer["predictions"]]
        assert np.allclose(got, many.numpy(), atol=1e-5)


def test_a_date_category_is_served_as_iso_text_and_read_back(tmp_path):
    from ember.tabular import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner

    days = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"] * 8)
    df = pd.DataFrame({"day": days, "x": np.linspace(-1, 1, 24), "y": list("ab") * 12})
    dls = TabularDataLoaders.from_df(
        df, y_names="y", cat_names=["day"], cont_names=["x"], procs=[Categorify, FillMissing, Normalize], seed=0, bs=8
    )
    torch.manual_seed(0)
    tabular_learner(dls, layers=[4], path=tmp_path).export(tmp_path / "dates.ember", verbose=False)
    learn = ember.load_learner(tmp_path / "dates.ember")
    label, _, probs = learn.predict({"day": pd.Timestamp("2024-01-02"), "x": 0.3})
    with running(tmp_path / "dates.ember") as server:  # a date is not JSON: it is listed as ISO text
        info = json.loads(call(server, "/info")[2])
        assert info["inputs"]["categorical"]["day"] == [
            "2024-01-01T00:00:00",
            "2024-01-02T00:00:00",
            "2024-01-03T00:00:00",
        ]
        for text in ("2024-01-02T00:00:00", "2024-01-02"):  # what the page sends, what a person types
            status, answer = post(server, {"row": {"day": text, "x": 0.3}})
            assert status == 200 and answer["prediction"] == label
            assert list(answer["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-5)


def test_table_refusals_name_the_column(table_model):
    with running(table_model) as server:
        status, answer = post(server, {"row": {"island": "Dream", "year": 2008}})
        assert status == 400 and "lacks the column(s) 'bill_length_mm', 'flipper_length_mm'" in answer["error"]
        status, answer = post(server, {"rows": [ROW, {**ROW, "flipper_length_mm": "long"}]})
        assert status == 400 and "'flipper_length_mm' of rows[1] holds 'long'" in answer["error"]
        status, answer = post(server, b"\x89PNG", "image/png")
        assert status == 400 and "This tabular model reads JSON" in answer["error"]


# ---------------------------------------------------------------------------------------------------
# texts and ratings
# ---------------------------------------------------------------------------------------------------
TEXTS = ["good great fine movie", "bad awful dull film", "great fine good", "dull bad awful"]


@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    from ember.text import TextDataLoaders, language_model_learner, text_classifier_learner

    root = tmp_path_factory.mktemp("serve_text")
    config = {"emb_sz": 8, "n_hid": 8, "n_layers": 1}
    torch.manual_seed(0)
    labels = ["pos", "neg"] * 2
    dls = TextDataLoaders.from_texts(TEXTS * 3, TEXTS, labels * 3, labels, bs=4, min_freq=1)
    clas = text_classifier_learner(dls, config=config, pretrained=False, seq_len=8, max_len=16, path=root)
    clas.export(root / "reviews.ember", verbose=False)
    lm_dls = TextDataLoaders.from_texts(TEXTS * 3, TEXTS, is_lm=True, bs=2, seq_len=4, min_freq=1)
    language_model_learner(lm_dls, config=config, pretrained=False, path=root).export(root / "lm.ember", verbose=False)
    return root / "reviews.ember", root / "lm.ember"


def test_text_classifier_answers_as_predict_batch(text_models):
    labels, _, probs = ember.load_learner(text_models[0]).predict_batch(TEXTS)
    with running(text_models[0]) as server:
        page = call(server, "/")[2].decode()
        assert "Classes (2): neg, pos" in page and '"kind": "text-classifier"' in page
        status, answer = post(server, {"texts": TEXTS})
        assert status == 200 and [a["prediction"] for a in answer["predictions"]] == labels
        got = [list(a["probabilities"].values()) for a in answer["predictions"]]
        assert np.allclose(got, probs.numpy(), atol=1e-5)
        status, answer = post(server, {"texts": ["fine", 3]})
        assert status == 400 and "Expected `texts[1]` to be a text" in answer["error"]


def test_language_model_writes_as_predict_with_the_same_seed(text_models):
    learn = ember.load_learner(text_models[1])
    torch.manual_seed(3)
    expected = learn.predict("good", n_words=6, temperature=0.8)
    with running(text_models[1]) as server:
        status, answer = post(server, {"text": "good", "n_words": 6, "temperature": 0.8, "seed": 3})
        assert status == 200 and answer == {"generated": expected}
        status, answer = post(server, {"text": "good", "n_words": 5000})
        assert status == 400 and "Expected `n_words` to be a whole number from 0 to 1000" in answer["error"]
        status, answer = post(server, {"text": "good", "seed": 2**70})
        assert status == 400 and "Expected `seed` to be a whole number from 0 to 2**63 - 1" in answer["error"]
        # a client's seed leaves the process's random state as it was
        torch.manual_seed(5)
        untouched = torch.rand(3)
        torch.manual_seed(5)
        assert post(server, {"text": "good", "n_words": 2, "seed": 3})[0] == 200
        assert torch.equal(torch.rand(3), untouched)


def test_ratings_from_user_and_item(tmp_path):
    from ember.collab import CollabDataLoaders, collab_learner

    ratings = pd.DataFrame(
        {"user": [1, 2, 3, 1, 2, 3, 4, 4], "movie": list("abacbcab"), "rating": [1, 2, 3, 4, 5, 1, 2, 3.0]}
    )
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=4, seed=0, valid_pct=0.25)
    collab_learner(dls, n_factors=4, y_range=(0, 5.5), path=tmp_path).export(tmp_path / "r.ember", verbose=False)
    learn = ember.load_learner(tmp_path / "r.ember")
    with running(tmp_path / "r.ember") as server:
        info = json.loads(call(server, "/info")[2])
        assert info["inputs"]["user"]["values"] == [1, 2, 3, 4] and info["inputs"]["item"]["column"] == "movie"
        status, answer = post(server, {"user": "2", "item": "b"})  # a form's text "2" is the user 2
        assert status == 200 and answer["prediction"] == pytest.approx(learn.predict((2, "b")), abs=1e-5)
        status, answer = post(server, {"user": 99, "item": "b"})
        assert status == 400 and "99" in answer["error"] and 'Send "unknown": "mean" in the body' in answer["error"]
        status, answer = post(server, {"pairs": [[3, "a"], {"user": 99, "item": "b"}], "unknown": "mean"})
        assert [a["prediction"] for a in answer["predictions"]] == pytest.approx(
            [learn.predict((3, "a")), learn.dls.rating_mean], abs=1e-5
        )
        status, answer = post(server, {"pairs": [[3, "a"]], "user": 2, "item": "a"})
        assert status == 400 and "Send either `user` and `item` (one pair), or `pairs`" in answer["error"]
        status, answer = post(server, {"user": 2})
        assert status == 400 and answer["error"].startswith("The body needs both `user` and `item`")
        status, answer = post(server, {"user": 2, "item": ["a"]})
        assert status == 400 and "Expected `item` to be an item id" in answer["error"]


# ---------------------------------------------------------------------------------------------------
# starting and stopping
# ---------------------------------------------------------------------------------------------------
def test_bad_arguments_and_a_taken_port_are_config_errors(image_model):
    with pytest.raises(ConfigError, match="Expected `port` to be a port number"):
        make_server(image_model[0], port=70000)
    with pytest.raises(ConfigError, match="Expected `model` to be a path to a .ember file, or a Learner"):
        make_server(42, port=0)
    with running(image_model[0]) as server:
        with pytest.raises(ConfigError, match="Cannot listen on 127.0.0.1.*Choose another port"):
            make_server(image_model[0], port=server.server_address[1])
    with pytest.raises(ConfigError, match="Expected `host` to be an address of this machine") as refused:
        make_server(image_model[0], host="192.0.2.1", port=0)  # a documentation address: not this machine's
    assert "port" not in str(refused.value)


def test_serve_prints_the_address_and_stops_cleanly_on_ctrl_c(image_model, monkeypatch, capsys):
    from ember.serve import ModelServer

    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt

    monkeypatch.setattr(ModelServer, "serve_forever", interrupted)
    serve(image_model[0], port=0)
    out = capsys.readouterr().out
    assert "Serving colors (image-classifier) at http://127.0.0.1:" in out and "Stopped." in out


def test_the_command_line(image_model, monkeypatch, capsys):
    from ember.cli import build_parser

    args = build_parser().parse_args(["serve", "m.ember", "--host", "0.0.0.0", "--port", "0", "--open"])
    assert (args.model, args.host, args.port, args.device, args.open) == ("m.ember", "0.0.0.0", 0, None, True)
    assert main(["serve", str(image_model[0].parent / "missing.ember")]) == 2
    assert "No model file at" in capsys.readouterr().err
    monkeypatch.setenv("COLUMNS", "200")  # help lines unwrapped
    for command in ("serve", "info", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "hf://user/name[@revision]" in capsys.readouterr().out
