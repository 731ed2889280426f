"""`ember train text-classifier` and `ember train language-model` (ULMFiT), and predictions on texts.

The classifier follows the ULMFiT lesson: a language model (pretrained on WikiText-103, or trained from scratch)
is first fine-tuned on all the texts, its encoder is handed to the classifier, and the classifier is trained with
gradual unfreezing. Each step is a call of ``ember.text`` (see docs/text.md), so it can be written in Python too.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ember.cli._common import Predictor, Task, close_figures, data_fail, fail, fmt, read_csv
from ember.cli._texts import classifier_texts, column, lm_texts, read_texts, split, text_files, valid_mask

__all__ = ["TASKS", "PREDICTORS", "add_predict_args", "info_lines"]

#: The learning-rate factor between two layer groups of the classifier (ULMFiT's 2.6 ** 4 over four groups).
_DISCRIMINATIVE = 2.6**4
#: Dropout multiplier of the language model fine-tuned before a classifier (the lesson's value).
_LM_DROP_MULT = 0.3
#: The share of all texts held out to validate that language model.
_LM_VALID_PCT = 0.1


# ---------------------------------------------------------------------------------------------------
# loaders
# ---------------------------------------------------------------------------------------------------
def _pretrained_files(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """The WikiText-103 weights and vocabulary to start from (None without ``--pretrained``), found before
    anything is read or trained: the files given, else where the library looks (downloading them when online)."""
    if not args.pretrained:
        if args.pretrained_files:
            raise fail("--pretrained-files gives the weights to start from: leave out --no-pretrained.")
        return None
    from ember.core.errors import DownloadError, EmberError
    from ember.data.external import URLs, ember_home
    from ember.text.learner import pretrained_wt103_files

    if args.pretrained_files:
        for f in map(Path, args.pretrained_files):
            if not f.is_file():
                raise fail(
                    f"No file {f} (--pretrained-files takes the weights WEIGHTS.pth and the vocabulary VOCAB.pkl)."
                )
        return pretrained_wt103_files(args.pretrained_files)
    try:
        return pretrained_wt103_files(None)
    except EmberError as e:
        if not isinstance(e.__cause__, DownloadError):
            raise
        folder = ember_home() / "data" / "wt103-fwd"
        raise fail(
            f"The pretrained WikiText-103 weights are not available offline ({e.__cause__}). Use --no-pretrained "
            f"to train from scratch, place the unpacked archive {URLs.WT103_FWD} (a .pth and a .pkl file) in "
            f"{folder}, or give --pretrained-files WEIGHTS.pth VOCAB.pkl."
        ) from e


def _lm_epochs(args: argparse.Namespace) -> int:
    """Epochs of the language model fine-tuned before the classifier: 0 for ``ember lr-find`` (the classifier
    as it starts), else ``--lm-epochs`` (default 1 with pretrained weights, 0 without)."""
    if getattr(args, "command", "train") != "train":
        return 0
    epochs = args.lm_epochs if args.lm_epochs is not None else (1 if args.pretrained else 0)
    if epochs < 0:
        raise fail(f"--lm-epochs must be 0 or more, not {epochs}.")
    return epochs


def _check_model_args(args: argparse.Namespace) -> None:
    for option, value in (("--seq-len", args.seq_len), ("--min-freq", args.min_freq), ("--max-vocab", args.max_vocab)):
        if value < 1:
            raise fail(f"{option} must be a positive whole number, not {value}.")
    for option in ("emb_sz", "n_hid", "n_layers", "max_len"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise fail(f"--{option.replace('_', '-')} must be a positive whole number, not {value}.")
    if getattr(args, "lm_lr", 1) <= 0:
        raise fail(f"--lm-lr must be a positive number, not {args.lm_lr}.")
    if not 0 <= args.drop_mult < 2:  # the largest default dropout, 0.5, must stay below 1
        raise fail(f"--drop-mult must be at least 0 and below 2 (it multiplies every dropout), not {args.drop_mult}.")


def _texts_kw(args: argparse.Namespace) -> dict[str, Any]:
    return {"bs": args.bs, "min_freq": args.min_freq, "max_vocab": args.max_vocab, "seed": args.seed}


def _classifier_dls(args: argparse.Namespace) -> Any:
    """Classification loaders; when a language model is fine-tuned first (``--lm-epochs``), its loaders too
    (kept in ``args``), over every text, and the classifier uses their vocabulary."""
    from ember.text import TextDataLoaders

    _check_model_args(args)
    args._text_pretrained = _pretrained_files(args)
    args._text_lm_epochs = _lm_epochs(args)
    texts = classifier_texts(args)
    vocab = None
    args._text_lm_dls = None
    if args._text_lm_epochs:
        everything = texts.train + texts.valid + texts.extra
        ltrain, lvalid = split(everything, valid_mask(len(everything), _LM_VALID_PCT, args.seed))
        lm_dls = TextDataLoaders.from_texts(ltrain, lvalid, is_lm=True, seq_len=args.seq_len, **_texts_kw(args))
        args._text_lm_dls, vocab = lm_dls, lm_dls.vocab
    return TextDataLoaders.from_texts(
        texts.train, texts.valid, texts.train_labels, texts.valid_labels, vocab=vocab, **_texts_kw(args)
    )


def _lm_dls(args: argparse.Namespace) -> Any:
    from ember.text import TextDataLoaders

    _check_model_args(args)
    args._text_pretrained = _pretrained_files(args)
    texts = lm_texts(args)
    return TextDataLoaders.from_texts(texts.train, texts.valid, is_lm=True, seq_len=args.seq_len, **_texts_kw(args))


def _n_tokens(ds: Any) -> int:
    return int(ds.corpus.offsets[-1])


def _describe_classifier(dls: Any) -> str:
    return (
        f"Data: {len(dls.train.dataset.corpus)} training and {len(dls.valid.dataset.corpus)} validation texts, "
        f"classes: {', '.join(dls.classes)}; vocabulary: {len(dls.vocab):,} tokens"
    )


def _describe_lm(dls: Any) -> str:
    train, valid = dls.train.dataset, dls.valid.dataset
    return (
        f"Data: {len(train.corpus)} training texts ({_n_tokens(train):,} tokens) and {len(valid.corpus)} validation "
        f"texts ({_n_tokens(valid):,} tokens); vocabulary: {len(dls.vocab):,} tokens"
    )


# ---------------------------------------------------------------------------------------------------
# learners and training
# ---------------------------------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> dict[str, int] | None:
    """The AWD-LSTM sizes given on the command line (None: the library's, those of the pretrained weights)."""
    config = {k: getattr(args, k) for k in ("emb_sz", "n_hid", "n_layers") if getattr(args, k) is not None}
    return config or None


def _report_dir(out: str) -> Path:
    """``<out stem>_report/`` beside the model file, as ``ember train`` names it."""
    path = Path(out)
    return path.with_suffix("").parent / (path.stem + "_report")


def _fit_stages(learn: Any, stages: Sequence[tuple[int | None, int, Any, str]]) -> None:
    """Run ``(freeze_to, epochs, lr, what)`` stages one after the other (``freeze_to`` None: unfreeze), printing
    each, and keep the recorder's history of all of them (so that ``loss.png`` shows the whole training)."""
    history: list[dict[str, Any]] = []
    for frozen, epochs, lr, what in stages:
        if epochs < 1:
            continue
        if frozen is None:
            learn.unfreeze()
        else:
            learn.freeze_to(frozen)
        shown = f"{lr.start:.2e} to {lr.stop:.2e}" if isinstance(lr, slice) else f"{lr:.2e}"
        print(f"Training {what}: {epochs} epoch(s), learning rate {shown}")
        learn.fit_one_cycle(epochs, lr)
        history.append(learn.recorder.state_dict())
    if len(history) > 1:
        merged = dict(history[-1])
        for key in ("values", "losses", "lrs", "moms", "iters", "epoch_times"):
            merged[key] = [x for h in history for x in h[key]]
        learn.recorder.load_state_dict(merged)


def _lm_stages(epochs: int, lr: float, pretrained: bool) -> list[tuple[int | None, int, Any, str]]:
    """From pretrained weights: one epoch of the embedding and decoder (body frozen) at `lr`, then the other
    epochs of everything at ``lr / 10`` (the lesson's 2e-2 then 2e-3); from scratch: everything at `lr`."""
    if not pretrained:
        return [(None, epochs, lr, "the language model")]
    return [(-1, 1, lr, "the embedding and decoder"), (None, epochs - 1, lr / 10, "the whole language model")]


def _fine_tune_lm(args: argparse.Namespace, lm_dls: Any, config: dict[str, int] | None) -> Path:
    """ULMFiT's second step: fine-tune a language model on every text and save its encoder in the report folder."""
    from ember.text import language_model_learner

    report_dir = _report_dir(args.out)
    report_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"Language model on every text: {len(lm_dls.train.dataset.corpus)} training and "
        f"{len(lm_dls.valid.dataset.corpus)} validation texts, {args._text_lm_epochs} epoch(s)"
    )
    lm = language_model_learner(
        lm_dls,
        config=config,
        drop_mult=_LM_DROP_MULT,
        pretrained=args._text_pretrained is not None,
        pretrained_fnames=args._text_pretrained,
        path=report_dir,
        model_dir=".",
    )
    _fit_stages(lm, _lm_stages(args._text_lm_epochs, args.lm_lr, args._text_pretrained is not None))
    loss, acc, ppl = lm.validate()
    encoder = lm.save_encoder("lm_encoder")
    print(f"Language model: validation accuracy {fmt(acc)}, perplexity {fmt(ppl)}; encoder saved to {encoder}")
    return encoder


def _weights_fail(args: argparse.Namespace, e: Exception) -> Exception:
    """One line for weights of other sizes than the model's: torch's first mismatch, and the options to set."""
    lines = [line.strip() for line in str(e).splitlines()]
    detail = next((line for line in lines if "size mismatch" in line or "key(s)" in line), "")
    detail = f" ({detail[:200]}{'…' if len(detail) > 200 else ''})" if detail else ""
    return fail(
        f"The pretrained weights {args._text_pretrained[0]} do not fit this model{detail}. Give the sizes of "
        "those weights with --emb-sz, --n-hid and --n-layers (WikiText-103: leave them out)."
    )


def _classifier_learner(args: argparse.Namespace, dls: Any) -> Any:
    """The classifier: from the fine-tuned language model's encoder, the pretrained weights, or from scratch
    (then unfrozen at once)."""
    from ember.core.errors import EmberError
    from ember.metrics import accuracy
    from ember.text import text_classifier_learner

    config = _config(args)
    lm_dls = getattr(args, "_text_lm_dls", None)
    encoder = None
    try:
        if lm_dls is not None:
            encoder = _fine_tune_lm(args, lm_dls, config)
        learn = text_classifier_learner(
            dls,
            seq_len=args.seq_len,
            config=config,
            drop_mult=args.drop_mult,
            max_len=args.max_len,
            pretrained=args._text_pretrained is not None and encoder is None,
            pretrained_fnames=args._text_pretrained,
            metrics=accuracy,
            path=args.workdir,
        )
    except EmberError as e:
        if "do not fit" in str(e) and args._text_pretrained is not None:
            raise _weights_fail(args, e) from e
        raise
    if encoder is not None:
        learn.load_encoder(str(encoder))
    args._text_gradual = encoder is not None or args._text_pretrained is not None
    if not args._text_gradual:
        learn.unfreeze()  # from scratch: nothing to protect, every layer learns from the start
    return learn


def _unfreezing_stages(epochs: int, lr: float) -> list[tuple[int | None, int, Any, str]]:
    """Gradual unfreezing over `epochs`: 1 epoch of the head at `lr`; 1 epoch of the last LSTM layer and the head
    at ``lr / 2``; the rest (``epochs - 2``) of everything at ``lr / 20``, each group of layers 2.6 ** 4 times
    slower than the next (the lesson's 2e-2, 1e-2 and 1e-3)."""
    return [
        (-1, 1, lr, "the head"),
        (-2, 1 if epochs >= 2 else 0, slice(lr / 2 / _DISCRIMINATIVE, lr / 2), "the last LSTM layer and the head"),
        (None, epochs - 2, slice(lr / 20 / _DISCRIMINATIVE, lr / 20), "every layer"),
    ]


def _fit_classifier(learn: Any, args: argparse.Namespace, lr: float) -> None:
    """Gradual unfreezing from a pretrained or fine-tuned encoder; ``fit_one_cycle`` from scratch."""
    if getattr(args, "_text_gradual", False):
        _fit_stages(learn, _unfreezing_stages(args.epochs, lr))
    else:
        learn.fit_one_cycle(args.epochs, lr)


def _lm_learner(args: argparse.Namespace, dls: Any) -> Any:
    from ember.core.errors import EmberError
    from ember.text import language_model_learner

    try:
        return language_model_learner(
            dls,
            config=_config(args),
            drop_mult=args.drop_mult,
            pretrained=args._text_pretrained is not None,
            pretrained_fnames=args._text_pretrained,
            path=args.workdir,
        )
    except EmberError as e:
        if "do not fit" in str(e) and args._text_pretrained is not None:
            raise _weights_fail(args, e) from e
        raise


def _fit_lm(learn: Any, args: argparse.Namespace, lr: float) -> None:
    _fit_stages(learn, _lm_stages(args.epochs, lr, args._text_pretrained is not None))


# ---------------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------------
def _classifier_report(learn: Any, report_dir: Path, start: float) -> None:
    """Loss plot in `report_dir`; print the validation accuracy and, above two classes, the most confused pairs."""
    close_figures(learn.recorder.plot_loss(fname=report_dir / "loss.png"))
    loss, acc = learn.validate()[:2]
    print(f"Validation accuracy {fmt(acc)} (loss {fmt(loss)}) in {time.perf_counter() - start:.0f} s")
    if len(learn.dls.classes) > 2:
        from ember.vision.interpret import ClassificationInterpretation

        confused = ClassificationInterpretation.from_learner(learn).most_confused()[:5]
        if confused:
            print("Most confused (actual, predicted, count): " + "; ".join(f"{a} → {p}: {n}" for a, p, n in confused))


def _first_words(learn: Any, n: int = 8) -> str:
    """The first `n` words of the first validation text, as text (the prompt of the report's sample)."""
    from ember.text.learner import decode_spec_tokens

    corpus = learn.dls.valid.dataset.corpus
    start, stop = int(corpus.offsets[0]), int(corpus.offsets[1])
    tokens = [learn.dls.vocab.itos[int(i)] for i in corpus.ids[start:stop]]
    return " ".join(decode_spec_tokens(tokens)[:n])


def _lm_report(learn: Any, report_dir: Path, start: float) -> None:
    """Loss plot and a generated sample in `report_dir`; print the validation accuracy, perplexity and sample."""
    close_figures(learn.recorder.plot_loss(fname=report_dir / "loss.png"))
    loss, acc, ppl = learn.validate()[:3]
    print(
        f"Validation accuracy {fmt(acc)}, perplexity {fmt(ppl)} (loss {fmt(loss)}) "
        f"in {time.perf_counter() - start:.0f} s"
    )
    prompt = _first_words(learn)
    sample = learn.predict(prompt, n_words=20, temperature=0.75)
    (report_dir / "sample.txt").write_text(sample + "\n", encoding="utf-8")
    print(f"Sample (from {prompt!r}, temperature 0.75): {sample}")


# ---------------------------------------------------------------------------------------------------
# predictions
# ---------------------------------------------------------------------------------------------------
def _inputs(args: argparse.Namespace) -> list[tuple[dict[str, Any], str]]:
    """``(where, text)`` for every input: a ``.txt`` file, each file of a folder, each row of a CSV file, each
    ``--text``. `where` is ``{"file": ...}``, ``{"file": ..., "row": i}`` or ``{"text": ...}``."""
    items: list[tuple[dict[str, Any], str]] = []
    for p in map(Path, args.inputs):
        if p.is_dir():
            files = text_files(p)
            if not files:
                raise data_fail(f"No .txt files under {p}.")
            items += [({"file": str(f)}, t) for f, t in zip(files, read_texts(files))]
        elif p.suffix.lower() == ".csv" and p.is_file():
            df = read_csv(p)
            texts = column(df, p, args.text_col, "--text-col", "text")
            items += [({"file": str(p), "row": i}, str(t)) for i, t in enumerate(texts)]
        elif p.is_file():
            items.append(({"file": str(p)}, read_texts([p])[0]))
        else:
            raise data_fail(f"No file or folder at {p}.")
    items += [({"text": t}, t) for t in args.text or []]
    if not items:
        raise fail('Nothing to predict: give .txt files, folders of them, CSV files (with --text-col) or --text "...".')
    return items


def _name(where: dict[str, Any]) -> str:
    """How an input is shown: its file, ``file:row``, or the text itself (shortened)."""
    if "row" in where:
        return f"{where['file']}:{where['row']}"
    if "file" in where:
        return where["file"]
    text = " ".join(where["text"].split())
    return json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)


def _write_csv(path: str, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _predict_classes(args: argparse.Namespace, learn: Any, items: list[tuple[dict[str, Any], str]]) -> int:
    """The top ``--top-k`` classes of every input (text, ``--json`` or ``--out`` CSV)."""
    import torch

    if args.top_k < 1:
        raise fail(f"--top-k must be 1 or more, not {args.top_k}.")
    classes = list(learn.dls.classes)
    _, _, probs = learn.predict_batch([t for _, t in items], bs=args.bs)
    top_p, top_i = torch.topk(probs, min(args.top_k, probs.shape[1]), dim=1)
    results = [
        {
            **where,
            "predictions": [
                {"label": classes[i], "probability": round(p, 6)} for p, i in zip(ps.tolist(), ix.tolist())
            ],
        }
        for (where, _), ps, ix in zip(items, top_p, top_i)
    ]
    if args.out:
        rows = [
            [
                _name(w) if "text" not in w else w["text"],
                r["predictions"][0]["label"],
                r["predictions"][0]["probability"],
            ]
            + [round(p, 6) for p in ps.tolist()]
            for (w, _), r, ps in zip(items, results, probs)
        ]
        _write_csv(args.out, ["input", "label", "probability", *[f"p_{c}" for c in classes]], rows)
    if args.json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
    else:
        for (where, _), r in zip(items, results):
            best = ", ".join(f"{q['label']} {q['probability']:.3f}" for q in r["predictions"])
            print(f"{_name(where)}: {best}")
    return 0


def _generate(args: argparse.Namespace, learn: Any, items: list[tuple[dict[str, Any], str]]) -> int:
    """Continue every prompt with ``--n-words`` words at ``--temperature`` (each prompt seeded by ``--seed``)."""
    import torch

    if args.n_words < 0:
        raise fail(f"--n-words must be 0 or more, not {args.n_words}.")
    if args.temperature < 0:
        raise fail(f"--temperature must be 0 (always the likeliest word) or more, not {args.temperature}.")
    results = []
    for where, prompt in items:
        if args.seed is not None:
            torch.manual_seed(args.seed)  # per prompt: a prompt's text does not depend on the others
        text = learn.predict(prompt, n_words=args.n_words, temperature=args.temperature)
        source = {k: v for k, v in where.items() if k != "text"}  # a --text prompt is the prompt itself
        results.append({**source, "prompt": prompt, "generated": text})
        if not args.json:
            print(text if "text" in where else f"{_name(where)}: {text}")
    if args.out:
        rows = [[_name(w) if "text" not in w else "", r["prompt"], r["generated"]] for (w, _), r in zip(items, results)]
        _write_csv(args.out, ["input", "prompt", "generated"], rows)
    if args.json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


def _is_text_learner(learn: Any) -> bool:
    from ember.text.learner import TextLearner

    return isinstance(learn, TextLearner)


def _predict_texts(args: argparse.Namespace, learn: Any) -> int:
    """Classify texts with a classifier; continue prompts with a language model."""
    from ember.text.learner import LMLearner

    items = _inputs(args)
    if isinstance(learn, LMLearner):
        return _generate(args, learn, items)
    return _predict_classes(args, learn, items)


# ---------------------------------------------------------------------------------------------------
# ember info
# ---------------------------------------------------------------------------------------------------
def info_lines(rec: dict[str, Any]) -> list[str]:
    """What ``ember info`` shows of a text model: its kind and classes, vocabulary, tokenizer and AWD-LSTM sizes."""
    data = rec.get("data") or {}
    if data.get("type") != "TextDataLoaders":
        return []
    d = data.get("data") or {}
    itos = ((d.get("vocab") or {}).get("data") or {}).get("itos") or []
    classes = d.get("classes") or []
    if d.get("is_lm"):
        lines = [f"Text: language model, batches of {d.get('seq_len')} tokens"]
    else:
        shown = ", ".join(classes[:10]) + (" …" if len(classes) > 10 else "")
        lines = [f"Text: classifier, {len(classes)} classes: {shown}"]
    words = [t for t in itos if not t.startswith("xx")][:8]
    lines.append(f"Vocabulary: {len(itos):,} tokens ({', '.join(words)}{' …' if len(itos) > len(words) else ''})")
    tok = (d.get("tokenizer") or {}).get("data") or {}
    if tok:
        word_tok = (tok.get("tok") or {}).get("type", "?")
        lines.append(f"Tokenizer: {word_tok}, rules: {', '.join(tok.get('rules') or []) or 'none'}")
    model = rec.get("model") or {}
    kwargs = model.get("kwargs") or {}
    if model.get("factory") in ("get_language_model", "get_text_classifier"):
        from ember.text.models import awd_lstm_clas_config, awd_lstm_lm_config

        is_lm = model["factory"] == "get_language_model"
        sizes = {**(awd_lstm_lm_config if is_lm else awd_lstm_clas_config), **(kwargs.get("config") or {})}
        line = (
            f"{kwargs.get('arch') or 'AWD_LSTM'}: emb_sz {sizes['emb_sz']}, n_hid {sizes['n_hid']}, "
            f"n_layers {sizes['n_layers']}, drop_mult {kwargs.get('drop_mult')}"
        )
        if not is_lm:
            line += (
                f"; reads texts {kwargs.get('seq_len')} tokens at a time, pools over the last {kwargs.get('max_len')}"
            )
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------------
# options and tasks
# ---------------------------------------------------------------------------------------------------
def _add_model_args(p: argparse.ArgumentParser, drop_mult: float) -> None:
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start from the WikiText-103 AWD-LSTM (EMBER_HOME/data/wt103-fwd, downloaded when online) (default on)",
    )
    p.add_argument(
        "--pretrained-files",
        nargs=2,
        metavar=("WEIGHTS.pth", "VOCAB.pkl"),
        default=None,
        help="pretrained weights and vocabulary in fastai's AWD-LSTM layout, instead of the WikiText-103 ones",
    )
    p.add_argument("--drop-mult", type=float, default=drop_mult, help=f"multiplies every dropout (default {drop_mult})")
    p.add_argument(
        "--seq-len", type=int, default=72, help="tokens per step of backpropagation through time (default 72)"
    )
    p.add_argument("--min-freq", type=int, default=3, help="a word seen fewer times becomes xxunk (default 3)")
    p.add_argument("--max-vocab", type=int, default=60000, help="largest vocabulary (default 60000)")
    p.add_argument("--emb-sz", type=int, default=None, help="AWD-LSTM embedding size (default 400, as the weights)")
    p.add_argument("--n-hid", type=int, default=None, help="AWD-LSTM hidden size (default 1152, as the weights)")
    p.add_argument("--n-layers", type=int, default=None, help="AWD-LSTM layers (default 3, as the weights)")


def _add_csv_args(p: argparse.ArgumentParser, split: Any) -> None:
    p.add_argument("--text-col", default="text", help="CSV: the column of texts (default text)")
    split.add_argument("--valid-col", default=None, help="CSV: a True/False column marking the validation rows")


def _add_classifier_args(p: argparse.ArgumentParser) -> None:
    split = p.add_mutually_exclusive_group()
    split.add_argument(
        "--valid-pct", type=float, default=None, help="share of texts held out at random, for DATA/<class>/ (0.2)"
    )
    split.add_argument(
        "--valid-folder", default=None, help="validation folder of the DATA/<train>/<class> layout (default test)"
    )
    p.add_argument("--train-folder", default=None, help="training folder of that layout (default train)")
    _add_csv_args(p, split)
    p.add_argument("--label-col", default=None, help="CSV: the column of classes (default label)")
    p.add_argument(
        "--lm-epochs",
        type=int,
        default=None,
        help="first fine-tune a language model on every text for N epochs and start from its encoder "
        "(default 1 with --pretrained, 0 without)",
    )
    p.add_argument("--lm-lr", type=float, default=2e-2, help="learning rate of that language model (default 2e-2)")
    p.add_argument(
        "--max-len", type=int, default=72 * 20, help="the head pools over the last N tokens of a text (default 1440)"
    )
    _add_model_args(p, drop_mult=0.5)


def _add_lm_args(p: argparse.ArgumentParser) -> None:
    split = p.add_mutually_exclusive_group()
    split.add_argument("--valid-pct", type=float, default=None, help="share of texts held out at random (default 0.1)")
    _add_csv_args(p, split)
    _add_model_args(p, drop_mult=_LM_DROP_MULT)


TASKS: dict[str, Task] = {
    "text-classifier": Task(
        help="one class per text (ULMFiT: a fine-tuned language model's encoder, gradual unfreezing)",
        data_help="a folder (DATA/<class>/*.txt, or DATA/train/<class>/ and DATA/test/<class>/) or a CSV file",
        add_args=_add_classifier_args,
        dls=_classifier_dls,
        learner=_classifier_learner,
        report=_classifier_report,
        describe=_describe_classifier,
        fit=_fit_classifier,
    ),
    "language-model": Task(
        help="an AWD-LSTM language model that continues texts",
        data_help="a folder of .txt files (sub-folders too; one text per file) or a CSV file",
        add_args=_add_lm_args,
        dls=_lm_dls,
        learner=_lm_learner,
        report=_lm_report,
        describe=_describe_lm,
        fit=_fit_lm,
    ),
}


def add_predict_args(p: argparse.ArgumentParser) -> None:
    """The options of ``ember predict`` for text models."""
    p.add_argument(
        "--text",
        action="append",
        default=None,
        metavar="TEXT",
        help="text models: a text to classify, or a prompt to continue (repeatable)",
    )
    p.add_argument("--text-col", default="text", help="text models: the column of texts in CSV inputs (default text)")
    p.add_argument("--n-words", type=int, default=20, help="language models: words to generate (default 20)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="language models: lower is more conservative, 0 always takes the likeliest word (default 1.0)",
    )
    p.add_argument("--seed", type=int, default=None, help="language models: seed of the sampling (default: random)")


PREDICTORS = [Predictor(handles=_is_text_learner, predict=_predict_texts)]
