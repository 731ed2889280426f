"""Share models on the Hugging Face Hub: `push_to_hub` uploads a learner's safe export with a model card, and
`from_hub` (or ``load_learner("hf://user/repo")``) downloads it once, into the Hugging Face cache, and loads it.

The file on the Hub is the ``model.ember`` that `Learner.export` writes (safetensors weights and a JSON recipe), so
loading a model from a stranger's repository never unpickles anything nor runs code from it: a recipe that names a
model class of its author's own is rebuilt only when that class's module is already imported here (see
:func:`ember.load_learner`). ``huggingface_hub`` comes with ember (timm, a dependency, requires it) and is imported
only when these functions run. Every failure of the Hub (no network, a repository or file that is not there, no
login) is an `EmberError` that names the repository and says what to do.

>>> url = push_to_hub(learn, "me/pet-breeds")          # doctest: +SKIP
>>> learn = from_hub("me/pet-breeds")                    # doctest: +SKIP
>>> learn = ember.load_learner("hf://me/pet-breeds@v1")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ember._version import __version__
from ember.core.errors import ConfigError, DownloadError, EmberError, ExportError, expected

__all__ = [
    "push_to_hub",
    "from_hub",
    "download_model",
    "resolve_model_path",
    "model_card",
    "HF_SCHEME",
    "MODEL_FILE",
]

#: The prefix of a model on the Hub wherever a model file is accepted: ``hf://user/repo`` or ``hf://user/repo@rev``.
HF_SCHEME = "hf://"
#: The name of the exported model inside a repository.
MODEL_FILE = "model.ember"

# The Hub's rules for a repository name: "name" or "namespace/name", letters, digits, "-", "_", "."; no "--", "..".
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")
_LOGIN = "log in with `hf auth login` (or set HF_TOKEN, or pass token=...)"

# What each kind of model is called on the Hub (its `pipeline_tag`), where the Hub has a name for it.
_PIPELINE_TAGS = {
    "image-classifier": "image-classification",
    "segmentation": "image-segmentation",
    "image-to-image": "image-to-image",
    "keypoints": "keypoint-detection",
    "text-classifier": "text-classification",
    "language-model": "text-generation",
}
# Per kind: what the model takes, a call of `predict`, and the arguments of `ember predict` (None: no command).
_IMAGE_USE = ("an image (a file path, a PIL image or an array)", 'learn.predict("photo.jpg")', "photos/")
_USES = {
    "tabular": (
        "a table row (a dict or a pandas row) with the input columns listed below",
        'learn.predict({"column": value, ...})',
        "rows.csv --out predictions.csv",
    ),
    "collab": ("a (user, item) pair", "learn.predict((user, item))", "pairs.csv --out predictions.csv"),
    "text-classifier": ("a text", 'learn.predict("A text to classify.")', '--text "A text to classify."'),
    "language-model": (
        "a prompt (a text)",
        'learn.predict("The beginning of a text", n_words=30)',
        '--text "The beginning of a text" --n-words 30',
    ),
    "model": ("what the model was trained on (see the details below)", "learn.predict(item)", None),
}


# ---------------------------------------------------------------------------------------------------
# names and errors
# ---------------------------------------------------------------------------------------------------
def _hf() -> Any:
    """The ``huggingface_hub`` module, or a `ConfigError` saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError(
            "Sharing models on the Hugging Face Hub needs the huggingface_hub package: pip install huggingface_hub"
        ) from None
    return huggingface_hub


def _check_repo_id(repo_id: Any, name: str = "repo_id") -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise ConfigError(
            expected(
                "a Hugging Face repository name, 'user/name' (letters, digits, '-', '_', '.')",
                name,
                repo_id,
                hint="Example: 'alice/pet-breeds'.",
            )
        )
    return repo_id


def _check_revision(revision: Any) -> str | None:
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ConfigError(expected("a branch, tag or commit name, or None (the main branch)", "revision", revision))
    return revision


def _parse_url(url: str) -> tuple[str, str | None]:
    """``"hf://user/repo@v1"`` -> ``("user/repo", "v1")``."""
    spec = url[len(HF_SCHEME) :]
    repo_id, at, revision = spec.partition("@")
    repo_id = repo_id.rstrip("/")
    if at and not revision:
        raise ConfigError(
            expected("hf://user/repo or hf://user/repo@revision", "path", url, hint="Name a revision after '@'.")
        )
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise ConfigError(expected("hf://user/repo or hf://user/repo@revision", "path", url))
    return repo_id, revision or None


def _where(repo_id: str, revision: str | None) -> str:
    return f"{HF_SCHEME}{repo_id}" + (f"@{revision}" if revision else "")


def _is_network_error(e: BaseException) -> bool:
    """A failure to reach the server: the HTTP client's transport errors, or the standard library's."""
    top = type(e).__module__.split(".")[0]
    return isinstance(e, (ConnectionError, TimeoutError)) or top in {"httpx", "httpx2", "requests", "urllib3"}


def _hub_error(e: BaseException, repo_id: str, revision: str | None, action: str) -> EmberError | None:
    """The `EmberError` that says what went wrong in words, for an error of ``huggingface_hub`` (None: not one).

    Args:
        action: ``"download"`` or ``"upload"``.
    """
    try:
        from huggingface_hub import errors as hf_errors
    except ImportError:  # huggingface_hub before 0.24 kept its errors in `utils`
        from huggingface_hub import utils as hf_errors

    def caught(name: str) -> bool:
        cls = getattr(hf_errors, name, None)
        return isinstance(cls, type) and isinstance(e, cls)

    where = _where(repo_id, revision)
    offline = _offline()
    fail = DownloadError if action == "download" else ExportError
    if caught("LocalTokenNotFoundError"):
        return ConfigError(f"Cannot {action} {where}: you are not logged in to the Hugging Face Hub; {_LOGIN}.")
    if caught("GatedRepoError"):
        return ConfigError(
            f"{where} is a gated repository: ask for access on https://huggingface.co/{repo_id}, then {_LOGIN}."
        )
    if caught("RepositoryNotFoundError"):
        return DownloadError(
            f"No model repository {repo_id!r} on the Hugging Face Hub, or it is private and you are not logged in. "
            f"Check the name (user/name), or {_LOGIN}."
        )
    if caught("RevisionNotFoundError"):
        return DownloadError(
            f"{repo_id!r} on the Hugging Face Hub has no revision {revision!r}. Name an existing branch, tag or "
            f"commit (hf://{repo_id}@REVISION), or leave the revision out for the main branch."
        )
    if caught("LocalEntryNotFoundError"):
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached"
        return DownloadError(
            f"{where} is not in the Hugging Face cache and {why}. "
            + (
                "Unset HF_HUB_OFFLINE and download it once while online; later loads read the cache."
                if offline
                else "Check the network connection (or a proxy) and try again; once downloaded, the model loads "
                "from the cache offline."
            )
        )
    if caught("EntryNotFoundError"):
        return DownloadError(
            f"{where} has no {MODEL_FILE}: it does not hold an ember model. An ember model is shared with "
            f"ember.hub.push_to_hub(learn, {repo_id!r})."
        )
    if caught("OfflineModeIsEnabled"):
        return fail(f"Cannot {action} {where}: HF_HUB_OFFLINE is set. Unset it to reach the Hugging Face Hub.")
    if caught("HfHubHTTPError"):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 401:
            return ConfigError(
                f"The Hugging Face Hub refused to {action} {where}: not logged in, or the token is not valid; {_LOGIN}."
            )
        if status == 403:
            return ConfigError(
                f"The Hugging Face Hub refused to {action} {where}: your token may not write there (a read-only "
                "token, or another user's or organization's namespace). Use a token with write access to it."
            )
        detail = getattr(e, "server_message", None) or str(e).splitlines()[0]
        return fail(f"The Hugging Face Hub could not {action} {where} (HTTP {status}: {detail}). Try again later.")
    if _is_network_error(e):
        return fail(
            f"Cannot {action} {where}: the Hugging Face Hub cannot be reached ({type(e).__name__}: {e}). "
            "Check the network connection (or a proxy) and try again."
        )
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


# ---------------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------------
def download_model(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
) -> Path:
    """The local path of a repository's ``model.ember``, downloaded into the Hugging Face cache the first time.

    With ``HF_HUB_OFFLINE=1`` (or without network) a file already in the cache is used as it is.

    Args:
        repo_id: ``"user/name"``.
        revision: a branch, tag or commit; None is the main branch.
        cache_dir: the cache folder; None is the Hugging Face default (``HF_HUB_CACHE``).
        token: a Hub token for a private repository; None uses the one ``hf auth login`` saved, if any.

    Raises:
        ConfigError: a bad repository name, huggingface_hub missing, not logged in for a private or gated one.
        DownloadError: no network and not cached, no such repository, revision or file.
    """
    _check_repo_id(repo_id)
    _check_revision(revision)
    hf = _hf()
    try:
        local = hf.hf_hub_download(
            repo_id,
            MODEL_FILE,
            revision=revision,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            token=token,
            library_name="ember",
            library_version=__version__,
        )
    except Exception as e:
        err = _hub_error(e, repo_id, revision, "download")
        if err is None:
            raise
        raise err from e
    return Path(local)


def resolve_model_path(path: str | os.PathLike) -> Path:
    """Where a model file is on this machine: ``hf://user/repo[@revision]`` is downloaded (cached) with
    `download_model`; any other path is returned as it is."""
    if isinstance(path, str) and path.startswith(HF_SCHEME):
        repo_id, revision = _parse_url(path)
        return download_model(repo_id, revision=revision)
    return Path(path)


def from_hub(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | Any = "cpu",
    token: str | bool | None = None,
) -> Any:
    """Load an ember model shared on the Hugging Face Hub (see `download_model` for the arguments).

    ``ember.load_learner("hf://user/name")`` and ``"hf://user/name@revision"`` do the same with the default cache.

    Args:
        device: where the model runs.

    Returns:
        The inference learner `load_learner` rebuilds from the file (never unpickled).

    Raises:
        ConfigError, DownloadError: as `download_model`.
        ExportError: the repository's file is not a valid ember export.

    >>> learn = from_hub("alice/pet-breeds")   # doctest: +SKIP
    >>> learn.predict("cat.jpg")               # doctest: +SKIP
    """
    from ember.learner.export import load_learner

    path = download_model(repo_id, revision=revision, cache_dir=cache_dir, token=token)
    return load_learner(path, device=device)


# ---------------------------------------------------------------------------------------------------
# upload
# ---------------------------------------------------------------------------------------------------
def _kind(learn: Any) -> str:
    """What the model predicts, in `learner_kind`'s words; ``"model"`` for a generic model with no image input."""
    from ember.cli._common import IMAGE_KINDS, learner_kind

    kind = learner_kind(learn)
    kinds = getattr(learn.dls, "kinds", None) or ()
    if kind in IMAGE_KINDS and (not kinds or kinds[0] != "image"):
        return "model"
    return kind


def _classes(learn: Any, kind: str) -> list[str]:
    """The class names the card lists (a text model's ``vocab`` is its tokens, not its classes)."""
    if kind == "language-model":
        return []
    names = getattr(learn.dls, "classes" if kind == "text-classifier" else "vocab", None)
    if not isinstance(names, (list, tuple)) or not all(isinstance(v, (str, int, float, bool)) for v in names):
        return []
    return [str(v) for v in names]


def _validation_metrics(learn: Any) -> list[tuple[str, float]]:
    """The validation loss and metrics of the last epoch trained, by name (empty when none was recorded)."""
    rec = getattr(learn, "recorder", None)
    if rec is None or not rec.values:
        return []
    names = rec.metric_names[2:-1]  # valid_loss and the metrics; not epoch, train_loss, time
    values = rec.values[-1][1:]  # (valid_loss, *metrics)
    return [(n, float(v)) for n, v in zip(names, values) if v is not None]


def model_card(learn: Any, recipe: dict[str, Any], repo_id: str) -> str:
    """The ``README.md`` shown on the repository's page: YAML front matter for the Hub, then what the model is,
    its last validation figures, and how to load it."""
    from ember.cli._common import IMAGE_KINDS, info_lines

    kind = _kind(learn)
    classes = _classes(learn, kind)
    pipeline = _PIPELINE_TAGS.get(kind)
    if kind == "tabular":
        pipeline = "tabular-classification" if classes else "tabular-regression"
    front = ["---", "library_name: ember", "tags:", "- ember"] + ([f"- {kind}"] if kind != "model" else [])
    if pipeline:
        front.append(f"pipeline_tag: {pipeline}")
    front.append("---")
    what = "model" if kind == "model" else f"{kind} model"
    inputs, call, command = _IMAGE_USE if kind in IMAGE_KINDS else _USES.get(kind, _USES["model"])
    body = [
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"An ember {what} ({recipe.get('learner')}), shared as one safe file, "
        f"`{MODEL_FILE}`: the weights as safetensors and a JSON recipe. Loading it never unpickles anything.",
        "",
    ]
    body.append(f"- **Input:** {inputs}")
    if classes:
        shown = ", ".join(classes[:50]) + (" …" if len(classes) > 50 else "")
        body.append(f"- **Classes ({len(classes)}):** {shown}")
    body += [f"- **Written by:** ember {recipe.get('ember_version', __version__)}", ""]
    body += ["## Validation", ""]
    metrics = _validation_metrics(learn)
    if metrics:
        body += ["Last epoch trained:", "", "| metric | value |", "| --- | --- |"]
        body += [f"| {name} | {value:.4f} |" for name, value in metrics]
    else:
        body.append("No validation figures were recorded.")
    body += ["", "## Use it", "", "```python", "import ember", ""]
    model = recipe.get("model") or {}
    if "factory" in model:
        body.append(f'learn = ember.load_learner("{HF_SCHEME}{repo_id}")   # downloaded once, then read from the cache')
    elif model.get("complete") and ":" in str(model.get("class")):  # the author's class: its module is imported first
        module = str(model["class"]).partition(":")[0]
        body.append(f"import {module}   # the code that defines the model ({model['class']}), installed separately")
        body.append(f'learn = ember.load_learner("{HF_SCHEME}{repo_id}")   # downloaded once, then read from the cache')
    else:  # a class ember cannot rebuild by itself: the user builds it and the file fills in the weights
        body.append(f'learn = ember.load_learner("{HF_SCHEME}{repo_id}", model=MyModel(...))   # your model class')
    body += [call, "```", ""]
    if command is not None:
        body += ["From the shell:", "", "```bash", f"ember predict {HF_SCHEME}{repo_id} {command}", "```", ""]
    body += ["## Details", "", "```text", *info_lines(recipe), "```", ""]
    return "\n".join(front + body)


_card_text = model_card  # `push_to_hub`'s argument of the same name hides the function there
_CARD_CHOICES = [True, False, "overwrite"]


def push_to_hub(
    learn: Any,
    repo_id: str,
    private: bool | None = None,
    commit_message: str = "Upload ember model",
    token: str | None = None,
    revision: str | None = None,
    model_card: bool | str = True,
) -> str:
    """Share `learn` on the Hugging Face Hub: its export as ``model.ember`` and a model card as ``README.md``.

    The repository is created when it does not exist (and the branch `revision`, when given). Load it back with
    `from_hub` or ``ember.load_learner("hf://user/name")``.

    Args:
        repo_id: ``"user/name"`` or ``"org/name"``; a bare ``"name"`` goes under your user.
        private: make a new repository private; None keeps the Hub's default (public). An existing repository keeps
            its visibility.
        token: a Hub token with write access; None uses the one ``hf auth login`` saved (or ``HF_TOKEN``).
        revision: the branch to commit to; None is the main branch.
        model_card: True writes the model card only when the repository (the branch) has no ``README.md`` yet, so a
            card edited on the Hub is kept when a retrained model is pushed; ``"overwrite"`` always writes it;
            False never does.

    Returns:
        The repository's web address (its branch's, when `revision` is given).

    Raises:
        ConfigError: a bad argument, huggingface_hub missing, not logged in, or no write access.
        ExportError: the learner cannot be exported, or the Hub cannot be reached or refuses the upload.

    >>> push_to_hub(learn, "alice/pet-breeds")   # doctest: +SKIP
    'https://huggingface.co/alice/pet-breeds'
    """
    from ember.learner.export import export_learner, read_recipe

    if not (hasattr(learn, "model") and hasattr(learn, "dls")):
        raise ConfigError(expected("a Learner", "learn", type(learn).__name__))
    _check_repo_id(repo_id)
    _check_revision(revision)
    if private is not None and not isinstance(private, bool):
        raise ConfigError(expected("True, False or None", "private", private))
    if not isinstance(commit_message, str) or not commit_message.strip():
        raise ConfigError(expected("a non-empty text", "commit_message", commit_message))
    if not (isinstance(model_card, bool) or model_card == "overwrite"):
        raise ConfigError(expected("whether to write the model card", "model_card", model_card, valid=_CARD_CHOICES))
    hf = _hf()
    api = hf.HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="ember-hub-") as tmp:
        folder = Path(tmp)
        path = export_learner(learn, folder / MODEL_FILE, verbose=False)  # export problems surface before any upload
        recipe = read_recipe(path)
        try:
            url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
            full_id = getattr(url, "repo_id", None) or repo_id  # "name" resolves to "user/name"
            if revision is not None:
                api.create_branch(full_id, branch=revision, repo_type="model", exist_ok=True)
            write_card = model_card == "overwrite" or (
                model_card is True and not api.file_exists(full_id, "README.md", repo_type="model", revision=revision)
            )
            if write_card:
                (folder / "README.md").write_text(_card_text(learn, recipe, full_id), encoding="utf-8")
            api.upload_folder(
                repo_id=full_id,
                folder_path=folder,
                commit_message=commit_message,
                revision=revision,
                repo_type="model",
            )
        except EmberError:
            raise
        except Exception as e:
            err = _hub_error(e, repo_id, revision, "upload")
            if err is None:
                raise
            raise err from e
    web = str(url).rstrip("/")
    return f"{web}/tree/{revision}" if revision is not None else web
