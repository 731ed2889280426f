"""Text: tokenization speed, language-model batch throughput and AWD-LSTM epoch time, ember against fastai.

The corpus is real English prose: every docstring of the Python standard library (available offline on
any machine), plus the human-numbers corpus, repeated until it reaches ``--mb`` megabytes.

1. Tokenization (tokens/s): ember's ``tokenize_texts`` (compiled regular expressions) against fastai's
   default ``tokenize_texts`` (spaCy's tokenizer with fastai's rules), both with the default rules and
   all CPUs. fastai can be run on a prefix of the corpus (``--fastai-mb``) because it is slow; rates are
   per token so they compare.
2. Language-model batches (tokens/s): one epoch of ember's ``LMDataset`` against fastai's
   ``LMDataLoader`` over the same numericalized documents (bs=64, seq_len=72).
3. AWD-LSTM language model, one epoch of ``fit_one_cycle`` (training and validation) with the same
   architecture, sizes, data, bs, seq_len and regularization (AR/TAR) in both libraries: the first epoch (which
   records ember's CUDA graphs on a GPU), then the median of ``--runs`` more. ``--ember-variants graphs,eager``
   times ember with and without CUDA graphs.

Judged figures: tokenization ``fastai / ember`` time per token (goal: >= 10), and LM epoch time
``ember / fastai`` on a GPU (goal: <= 0.7).

    .bench-venv/bin/python benchmarks/text.py            # with fastai
    python benchmarks/text.py --device cuda --parts epoch --mb 8 --epoch-tokens 1000000 --runs 4 \
        --ember-variants graphs,eager                    # the LM epoch on a GPU
    python benchmarks/text.py --quick                    # a smoke test, small sizes
"""

from __future__ import annotations

import argparse
import ast
import sys
import sysconfig
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import env_report, fmt_ratio, package_version, print_env, print_table, set_threads

from ember.data.builtin import human_numbers
from ember.text.data import LMDataset
from ember.text.tokenize import TokenizedCorpus, Tokenizer, _offsets, read_text_files, tokenize_texts
from ember.text.vocab import Vocab

TOK_GOAL, EPOCH_GOAL = 10.0, 0.7


def stdlib_docstrings() -> list[str]:
    """Every module, class and function docstring of the standard library: a few MB of English prose."""
    texts = []
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "site-packages" in f.parts or "test" in f.parts:
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    texts.append(doc)
    return texts


def build_corpus(mb: float) -> list[str]:
    path = human_numbers()
    hn = read_text_files([path / "train.txt", path / "valid.txt"])
    # Human numbers as documents of 100 lines each, so both sources are many mid-sized documents.
    lines = "".join(hn).splitlines(keepends=True)
    base = stdlib_docstrings() + ["".join(lines[i : i + 100]) for i in range(0, len(lines), 100)]
    texts, size, target = [], 0, int(mb * 1e6)
    while size < target:
        for t in base:
            texts.append(t)
            size += len(t)
            if size >= target:
                break
    return texts


def bench_tokenize(texts: list[str], fastai_texts: list[str]) -> list[list[Any]]:
    rows = []
    t0 = time.perf_counter()
    toks = tokenize_texts(texts, Tokenizer())
    dt = time.perf_counter() - t0
    n = sum(len(t) for t in toks)
    rows.append(["ember (regex)", f"{sum(map(len, texts)) / 1e6:.1f}", n, f"{dt:.2f}", f"{n / dt:,.0f}"])
    try:
        from fastai.text.core import tokenize_texts as fa_tokenize_texts

        t0 = time.perf_counter()
        ftoks = fa_tokenize_texts(fastai_texts)
        dt = time.perf_counter() - t0
        n = sum(len(t) for t in ftoks)
        mb = sum(map(len, fastai_texts)) / 1e6
        rows.append(["fastai (spaCy)", f"{mb:.1f}", n, f"{dt:.2f}", f"{n / dt:,.0f}"])
    except Exception as e:  # fastai or spaCy missing: say so in the table
        rows.append(["fastai (spaCy)", "–", "–", "–", f"unavailable: {type(e).__name__}: {e}"[:60]])
    return rows


def numericalized(texts: list[str], max_vocab: int) -> TokenizedCorpus:
    toks = tokenize_texts(texts, Tokenizer())
    vocab = Vocab.from_tokens(toks, max_vocab=max_vocab)
    lens = np.array([len(t) for t in toks])
    return TokenizedCorpus(vocab.numericalize_flat(toks), _offsets(lens), vocab)


def bench_lm_batches(corpus: TokenizedCorpus, bs: int, seq_len: int) -> list[list[Any]]:
    rows = []
    ds = LMDataset(corpus, bs, seq_len, shuffle=True, random_seq_len=True, seed=0)
    t0 = time.perf_counter()
    n = sum(x.numel() for x, _ in ds)
    dt = time.perf_counter() - t0
    rows.append(["ember LMDataset", n, f"{dt:.3f}", f"{n / dt:,.0f}"])
    try:
        from fastai.text.data import LMDataLoader

        docs = [torch.from_numpy(np.asarray(corpus[i], dtype=np.int64)) for i in range(len(corpus))]
        dl = LMDataLoader(docs, bs=bs, seq_len=seq_len, shuffle=True)
        t0 = time.perf_counter()
        n = sum(x.numel() for x, _ in dl)
        dt = time.perf_counter() - t0
        rows.append(["fastai LMDataLoader", n, f"{dt:.3f}", f"{n / dt:,.0f}"])
    except Exception as e:
        rows.append(["fastai LMDataLoader", "–", "–", f"unavailable: {type(e).__name__}"])
    return rows


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_epochs(fit_one: Any, device: str, runs: int) -> tuple[float, float]:
    """Seconds of the first one-epoch fit (kernels chosen, memory cached, graphs recorded) and the median of
    `runs` one-epoch fits after it."""
    times = []
    for _ in range(runs + 1):
        _sync(device)
        t0 = time.perf_counter()
        fit_one()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times[0], float(np.median(times[1:]))


def ember_epoch(
    train: TokenizedCorpus, valid: TokenizedCorpus, cfg: dict, bs: int, seq_len: int, opts: argparse.Namespace
) -> tuple[float, float]:
    from ember.text.data import lm_dataloaders
    from ember.text.learner import language_model_learner

    dls = lm_dataloaders(train, valid, bs=bs, seq_len=seq_len, device=opts.device, seed=0)
    torch.manual_seed(0)
    graphs = opts.variant == "graphs"
    learn = language_model_learner(dls, pretrained=False, config=cfg, precision=opts.precision, cuda_graphs=graphs)
    learn.silent = True
    return _timed_epochs(lambda: learn.fit_one_cycle(1, 2e-3), opts.device, opts.runs)


def fastai_epoch(
    train: TokenizedCorpus, valid: TokenizedCorpus, cfg: dict, bs: int, seq_len: int, opts: argparse.Namespace
) -> tuple[float, float]:
    import fastai.callback.schedule  # noqa: F401 (adds fit_one_cycle to Learner)
    from fastai.callback.fp16 import MixedPrecision
    from fastai.callback.progress import ProgressCallback
    from fastai.data.core import DataLoaders
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import Perplexity, accuracy
    from fastai.text.data import LMDataLoader
    from fastai.text.learner import LMLearner
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config, awd_lstm_lm_split
    from fastai.text.models.core import get_language_model

    def docs(c: TokenizedCorpus) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(c[i], dtype=np.int64)) for i in range(len(c))]

    dls = DataLoaders(
        LMDataLoader(docs(train), bs=bs, seq_len=seq_len, shuffle=True),
        LMDataLoader(docs(valid), bs=bs, seq_len=seq_len),
        device=opts.device,
    )
    torch.manual_seed(0)
    model = get_language_model(AWD_LSTM, len(train.vocab), config={**awd_lstm_lm_config, **cfg})
    cbs = []
    if opts.precision != "32":  # fastai's autocast + grad scaler, the same recipe as ember's
        cbs.append(MixedPrecision(amp_mode="bf16" if opts.precision == "bf16-mixed" else "fp16"))
    learn = LMLearner(
        dls, model, loss_func=CrossEntropyLossFlat(), splitter=awd_lstm_lm_split, metrics=[accuracy, Perplexity()],
        cbs=cbs,
    )  # fmt: skip
    learn.remove_cb(ProgressCallback)

    def fit_one() -> None:
        with learn.no_logging():
            learn.fit_one_cycle(1, 2e-3)

    return _timed_epochs(fit_one, opts.device, opts.runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size for tokenization (MB)")
    parser.add_argument("--fastai-mb", type=float, default=5.0, help="prefix of the corpus fastai tokenizes (MB)")
    parser.add_argument("--epoch-tokens", type=int, default=300_000, help="training tokens of the LM epoch")
    parser.add_argument("--emb", type=int, default=400, help="AWD-LSTM embedding size")
    parser.add_argument("--hid", type=int, default=1152, help="AWD-LSTM hidden size")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--max-vocab", type=int, default=60000)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=72)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all CPUs)")
    parser.add_argument("--device", default="cpu", help="device of the LM epoch: cpu (default) or cuda")
    parser.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"], help="of the LM epoch")
    parser.add_argument("--runs", type=int, default=1, help="timed LM epochs per library, after a warm-up (median)")
    parser.add_argument(
        "--ember-variants",
        default="graphs",
        help="ember's LM epoch with CUDA graphs (graphs, the default) and/or without (eager), comma-separated; "
        "the first is the judged one (the two are the same on a CPU)",
    )
    parser.add_argument("--parts", default="tok,batches,epoch", help="comma-separated parts to run")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if args.quick:
        args.mb, args.fastai_mb, args.epoch_tokens = 2.0, 0.5, 30_000
        args.emb, args.hid, args.layers, args.max_vocab = 64, 128, 2, 4000
    set_threads(args.threads)
    print_env(env_report(args.device))
    print(f"spacy: {package_version('spacy') or 'not installed'}")

    texts = build_corpus(args.mb)
    fa_texts, size = [], 0
    for t in texts:
        if size >= args.fastai_mb * 1e6:
            break
        fa_texts.append(t)
        size += len(t)
    tok_rows = bench_tokenize(texts, fa_texts) if "tok" in parts else []
    if tok_rows:
        print_table("Tokenization (default rules, all CPUs)", ["tokenizer", "MB", "tokens", "s", "tokens/s"], tok_rows)

    # A corpus for the LM: as many documents as give --epoch-tokens training tokens, 10% more for validation.
    sub, n = [], 0
    for t in texts:
        sub.append(t)
        n += len(t) // 5
        if n >= args.epoch_tokens * 1.1:
            break
    corpus = numericalized(sub, args.max_vocab)
    n_valid = max(1, len(corpus) // 11)
    train = corpus.subset(np.arange(n_valid, len(corpus)))
    valid = corpus.subset(np.arange(n_valid))
    batch_rows = []
    if "batches" in parts:
        batch_rows = bench_lm_batches(numericalized(texts[: len(texts) // 4], args.max_vocab), args.bs, args.seq_len)
        cols = ["loader", "tokens", "s", "tokens/s"]
        print_table(f"LM batches (bs={args.bs}, seq_len={args.seq_len})", cols, batch_rows)

    cfg = dict(emb_sz=args.emb, n_hid=args.hid, n_layers=args.layers)
    epoch_rows = []
    times: dict[str, float] = {}
    variants = args.ember_variants.split(",")
    contenders = [(f"ember ({v})", ember_epoch, v) for v in variants] + [("fastai", fastai_epoch, "")]
    for name, fn, variant in contenders if "epoch" in parts else ():
        args.variant = variant
        try:
            first, times[name] = fn(train, valid, cfg, args.bs, args.seq_len, args)
            epoch_rows.append([name, f"{first:.2f}", f"{times[name]:.2f}"])
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            epoch_rows.append([name, "–", f"unavailable: {type(e).__name__}"])
    title = (
        f"AWD-LSTM LM, 1 epoch ({int(train.offsets[-1]):,} train tokens, vocab {len(train.vocab)}, "
        f"emb {args.emb}, hid {args.hid}, {args.layers} layers, bs {args.bs}, seq_len {args.seq_len}, "
        f"{args.device}, precision {args.precision}; median of {args.runs} after the first epoch)"
    )
    if epoch_rows:
        print_table(title, ["library", "first epoch s", "s/epoch"], epoch_rows)

    def rate(rows: list[list[Any]], i: int) -> float:
        try:
            return float(str(rows[i][-1]).replace(",", ""))
        except (ValueError, IndexError):
            return float("nan")

    nan = float("nan")
    tok_ratio = fmt_ratio(rate(tok_rows, 0), rate(tok_rows, 1))
    print(f"tokenization speed-up, fastai time / ember time per token: {tok_ratio} (goal >= {TOK_GOAL})")
    print(f"LM batches speed-up: {fmt_ratio(rate(batch_rows, 0), rate(batch_rows, 1))}")
    for i, v in enumerate(variants):
        ratio = fmt_ratio(times.get(f"ember ({v})", nan), times.get("fastai", nan))
        judged = f" (goal <= {EPOCH_GOAL})" if i == 0 else ""
        print(f"LM epoch time ember ({v})/fastai: {ratio}{judged}")


if __name__ == "__main__":
    main()
