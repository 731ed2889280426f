"""Sharing on the Hugging Face Hub with no network: uploads are recorded by stand-ins for the Hub's API, downloads
are read from a Hugging Face cache built in a temporary folder with offline mode on."""

from __future__ import annotations

import shutil
import sys
from types import SimpleNamespace

import pytest
import torch

hf = pytest.importorskip("huggingface_hub")

from huggingface_hub import constants as hf_constants  # noqa: E402
from huggingface_hub import errors as hf_errors  # noqa: E402

from ember.core.errors import ConfigError, DownloadError, EmberError, ExportError  # noqa: E402
from ember.data.builtin import penguins  # noqa: E402
from ember.hub import from_hub, push_to_hub  # noqa: E402
from ember.learner.export import load_learner, read_recipe  # noqa: E402
from ember.metrics import accuracy  # noqa: E402
from ember.tabular import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONTS = ["bill_length_mm", "bill_depth_mm"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing reaches the network: huggingface_hub reads HF_HUB_OFFLINE once, at import, so set its constant too."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A penguin classifier trained one epoch, and its export."""
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(
        penguins(),
        y_names="species",
        cat_names=["island", "sex"],
        cont_names=CONTS,
        procs=[Categorify, FillMissing, Normalize],
        bs=32,
        seed=42,
        device="cpu",
    )
    learn = tabular_learner(dls, layers=[8], metrics=accuracy, path=tmp_path_factory.mktemp("hub"))
    learn.silent = True
    learn.fit_one_cycle(1, 1e-2)
    return learn, learn.export("penguins.ember", verbose=False)


def cache_repo(cache, repo_id, model_file, commit=COMMIT, ref="main"):
    """Put `model_file` in `cache` as huggingface_hub lays out a downloaded file (a plain copy, as on systems
    without symbolic links): ``models--user--name/refs/<ref>`` holds the commit (no newline), and
    ``snapshots/<commit>/model.ember`` the file."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, snapshot / "model.ember")
    return snapshot / "model.ember"


def rows(n=12):
    return penguins().iloc[:n]


# ---------------------------------------------------------------------------------------------------
# push_to_hub
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def fake_api(monkeypatch, tmp_path):
    """Stand-ins for the Hub's API methods that record their arguments and keep a copy of the uploaded folder; the
    repository holds the files named in ``calls["files"]`` (none at first)."""
    calls = {"files": set()}
    uploaded = tmp_path / "uploaded"

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        return hf.RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        calls["create_branch"] = (repo_id, kwargs)

    def upload_folder(self, **kwargs):
        calls["upload_folder"] = kwargs
        calls["sent"] = sorted(p.name for p in kwargs["folder_path"].iterdir())
        shutil.copytree(kwargs["folder_path"], uploaded, dirs_exist_ok=True)  # the folder is temporary: keep it
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{COMMIT}")

    def file_exists(self, repo_id, filename, **kwargs):
        calls.setdefault("file_exists", []).append((repo_id, filename, kwargs))
        return filename in calls["files"]

    monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hf.HfApi, "file_exists", file_exists)
    monkeypatch.setattr(hf.HfApi, "create_branch", create_branch)
    monkeypatch.setattr(hf.HfApi, "upload_folder", upload_folder)
    return calls, uploaded


def test_push_uploads_a_loadable_model_and_a_model_card(trained, fake_api):
    learn, _ = trained
    calls, uploaded = fake_api
    url = push_to_hub(learn, "alice/penguins", private=True, commit_message="First model")
    assert url == "https://huggingface.co/alice/penguins"
    assert calls["create_repo"] == ("alice/penguins", {"private": True, "repo_type": "model", "exist_ok": True})
    up = calls["upload_folder"]
    assert up["repo_id"] == "alice/penguins" and up["commit_message"] == "First model" and up["revision"] is None
    assert "create_branch" not in calls
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "model.ember"]

    loaded = load_learner(uploaded / "model.ember")
    labels, _, probs = loaded.predict_batch(rows())
    ref_labels, _, ref_probs = learn.predict_batch(rows())
    assert labels == ref_labels and torch.allclose(probs, ref_probs, atol=1e-6)

    card = (uploaded / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "library_name: ember\n" in front and "- ember\n- tabular\n" in front
    assert "pipeline_tag: tabular-classification" in front
    assert "# penguins" in body and "**Classes (3):** Adelie, Chinstrap, Gentoo" in body
    valid_loss, acc = learn.recorder.values[-1][1:]
    assert f"| valid_loss | {valid_loss:.4f} |" in body and f"| accuracy | {acc:.4f} |" in body
    assert 'ember.load_learner("hf://alice/penguins")' in body and "ember predict hf://alice/penguins" in body
    assert f"ember {read_recipe(uploaded / 'model.ember')['ember_version']}" in body
    assert "Continuous columns (2): bill_length_mm, bill_depth_mm" in body  # ember info's lines


def test_push_to_a_branch_creates_it_and_returns_its_address(trained, fake_api):
    calls, _ = fake_api
    url = push_to_hub(trained[0], "alice/penguins", revision="v1")
    assert url == "https://huggingface.co/alice/penguins/tree/v1"
    assert calls["create_branch"] == ("alice/penguins", {"branch": "v1", "repo_type": "model", "exist_ok": True})
    assert calls["upload_folder"]["revision"] == "v1"


def test_push_keeps_a_model_card_already_on_the_hub_unless_told(trained, fake_api):
    calls, uploaded = fake_api
    calls["files"].add("README.md")  # a card written, or edited, on the Hub
    push_to_hub(trained[0], "alice/penguins", revision="v2")
    assert calls["sent"] == ["model.ember"]
    assert calls["file_exists"] == [("alice/penguins", "README.md", {"repo_type": "model", "revision": "v2"})]
    push_to_hub(trained[0], "alice/penguins", model_card="overwrite")
    assert calls["sent"] == ["README.md", "model.ember"] and len(calls["file_exists"]) == 1  # not asked
    calls["files"].clear()
    push_to_hub(trained[0], "alice/penguins", model_card=False)
    assert calls["sent"] == ["model.ember"] and len(calls["file_exists"]) == 1
    with pytest.raises(ConfigError, match=r"Expected `model_card` to be whether to write.*valid: True, False"):
        push_to_hub(trained[0], "alice/penguins", model_card="yes")


def test_a_text_classifier_card_lists_its_classes_not_its_tokens(tmp_path):
    from ember.hub import model_card
    from ember.learner.export import _learner_recipe
    from ember.text import TextDataLoaders, text_classifier_learner

    texts = ["good great fine", "bad awful dull", "great fine good", "dull bad awful"]
    dls = TextDataLoaders.from_texts(texts * 2, texts, ["pos", "neg"] * 4, ["pos", "neg"] * 2, bs=4, min_freq=1)
    config = {"emb_sz": 8, "n_hid": 8, "n_layers": 1}
    learn = text_classifier_learner(dls, config=config, pretrained=False, seq_len=8, max_len=16, path=tmp_path)
    card = model_card(learn, _learner_recipe(learn), "alice/reviews")
    assert "- **Classes (2):** neg, pos\n" in card and "pipeline_tag: text-classification" in card


def test_the_card_of_a_model_of_ones_own_class_says_to_import_its_module(trained):
    from ember.hub import model_card

    learn, path = trained
    recipe = {**read_recipe(path), "model": {"class": "penguin_nets.models:Net", "kwargs": {}, "complete": True}}
    card = model_card(learn, recipe, "alice/penguins")
    code = card.split("```python\n", 1)[1].split("```")[0]
    assert code.index("import penguin_nets.models") < code.index('learn = ember.load_learner("hf://alice/penguins")')


def test_push_when_not_logged_in_says_how_to_log_in(trained, monkeypatch):
    def create_repo(self, repo_id, **kwargs):
        raise hf_errors.LocalTokenNotFoundError("Token is required")

    monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
    with pytest.raises(ConfigError, match=r"hf://alice/penguins.*not logged in.*hf auth login"):
        push_to_hub(trained[0], "alice/penguins")


def test_push_offline_is_a_clear_error_and_bad_arguments_are_refused(trained):
    # no stand-ins here: the real create_repo meets offline mode
    with pytest.raises(ExportError, match=r"Cannot upload hf://alice/penguins: HF_HUB_OFFLINE is set"):
        push_to_hub(trained[0], "alice/penguins")
    with pytest.raises(ConfigError, match=r"`repo_id`.*'alice/pen guins'"):
        push_to_hub(trained[0], "alice/pen guins")
    with pytest.raises(ConfigError, match=r"`learn`"):
        push_to_hub("model.ember", "alice/penguins")


# ---------------------------------------------------------------------------------------------------
# from_hub and hf:// paths
# ---------------------------------------------------------------------------------------------------
def test_from_hub_and_hf_paths_load_the_cached_model_offline(trained, tmp_path, monkeypatch):
    learn, path = trained
    cached = cache_repo(tmp_path, "alice/penguins", path)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # the default cache of hf:// paths

    ref_labels, _, ref_probs = learn.predict_batch(rows())
    for loaded in (
        from_hub("alice/penguins", cache_dir=tmp_path),
        load_learner("hf://alice/penguins"),
        load_learner(f"hf://alice/penguins@{COMMIT}"),
    ):
        labels, _, probs = loaded.predict_batch(rows())
        assert labels == ref_labels and torch.allclose(probs, ref_probs, atol=1e-6)
    assert read_recipe("hf://alice/penguins") == read_recipe(cached)  # what `ember info` reads
    from ember.cli._common import info_lines

    lines = info_lines(read_recipe("hf://alice/penguins"), "hf://alice/penguins")  # ember info and ember serve
    assert lines[0] == f"File: hf://alice/penguins ({cached.stat().st_size / 1e6:.2f} MB)"


def test_serve_and_info_of_an_hf_address_look_it_up_once(trained, tmp_path, monkeypatch, capsys):
    from ember.cli import main
    from ember.serve import make_server

    cached = cache_repo(tmp_path, "alice/penguins", trained[1])
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    looked_up, download = [], hf.hf_hub_download

    def counted(*args, **kwargs):
        looked_up.append(args)
        return download(*args, **kwargs)

    monkeypatch.setattr(hf, "hf_hub_download", counted)
    server = make_server("hf://alice/penguins", port=0)
    server.server_close()
    assert len(looked_up) == 1 and server.service.info["name"] == "penguins"
    assert server.service.info["lines"][0] == f"File: hf://alice/penguins ({cached.stat().st_size / 1e6:.2f} MB)"
    capsys.readouterr()
    assert main(["info", "hf://alice/penguins"]) == 0 and len(looked_up) == 2
    assert capsys.readouterr().out.splitlines()[0] == server.service.info["lines"][0]


def test_uncached_repo_offline_says_what_to_do(tmp_path):
    with pytest.raises(DownloadError, match=r"hf://alice/other is not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        from_hub("alice/other", cache_dir=tmp_path)
    with pytest.raises(DownloadError, match=r"hf://alice/other@v2 is not in the Hugging Face cache"):
        from_hub("alice/other", revision="v2", cache_dir=tmp_path)


def test_a_cached_file_that_is_not_an_ember_export_gets_the_loaders_error(tmp_path):
    junk = tmp_path / "junk.ember"
    junk.write_bytes(b"not a zip at all")
    cache_repo(tmp_path / "cache", "alice/junk", junk)
    with pytest.raises(ExportError, match="not a valid ember file"):
        from_hub("alice/junk", cache_dir=tmp_path / "cache")


def _http_error(cls, status):
    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return cls(f"{status} Client Error", response=response)


HUB_FAILURES = [
    (hf_errors.RepositoryNotFoundError, 404, DownloadError, r"No model repository 'alice/x'.*log in"),
    (hf_errors.GatedRepoError, 403, ConfigError, r"gated.*huggingface.co/alice/x"),
    (hf_errors.RemoteEntryNotFoundError, 404, DownloadError, r"hf://alice/x has no model.ember"),
    (hf_errors.HfHubHTTPError, 401, ConfigError, r"hf://alice/x.*token is not valid"),
    (hf_errors.HfHubHTTPError, 403, ConfigError, r"hf://alice/x.*write access"),
    (hf_errors.HfHubHTTPError, 503, DownloadError, r"could not download hf://alice/x \(HTTP 503"),
    (hf_errors.LocalEntryNotFoundError, None, DownloadError, r"hf://alice/x is not in the Hugging Face cache"),
]


@pytest.mark.parametrize("cls,status,kind,message", HUB_FAILURES)
def test_hub_failures_become_clear_errors_naming_the_repo(monkeypatch, cls, status, kind, message):
    def download(*args, **kwargs):
        raise cls("no such file") if status is None else _http_error(cls, status)

    monkeypatch.setattr(hf, "hf_hub_download", download)
    with pytest.raises(kind, match=message) as info:
        from_hub("alice/x")
    assert isinstance(info.value, EmberError) and isinstance(info.value.__cause__, hf_errors.HfHubHTTPError | OSError)


def test_bad_names_and_a_missing_package_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match=r"`path`.*'hf://alice//x'"):
        load_learner("hf://alice//x")
    with pytest.raises(ConfigError, match=r"`path`.*Name a revision"):
        load_learner("hf://alice/x@")
    with pytest.raises(ConfigError, match=r"`repo_id`.*'alice/x/y'"):
        from_hub("alice/x/y")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install huggingface_hub"):
        from_hub("alice/x")
