"""Text: tokenizers, vocabularies, language-model and classification loaders, AWD-LSTM and the text learners.

``import ember.text`` imports the modules whose classes an exported model names (tokenizer, vocabulary,
loaders, model factories and learners), so that ``load_learner`` finds them; the names are bound on first use.

>>> from ember.text import TextDataLoaders, language_model_learner  # doctest: +SKIP
>>> dls = TextDataLoaders.from_folder(path, is_lm=True)               # doctest: +SKIP
>>> learn = language_model_learner(dls, pretrained=False)             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported for its side effect: it registers (with the data, model and tokenizer modules it imports) the recipes,
# model factories and learners that exported files name.
from ember.text import learner as _learner  # noqa: F401

_LAZY = {
    **dict.fromkeys(
        [
            "UNK",
            "PAD",
            "BOS",
            "EOS",
            "FLD",
            "TK_REP",
            "TK_WREP",
            "TK_UP",
            "TK_MAJ",
            "SPECIAL_TOKENS",
            "DEFAULT_RULES",
            "RULES",
            "WordTokenizer",
            "Tokenizer",
            "SpacyTokenizer",
            "SubwordTokenizer",
            "tokenize_texts",
            "tokenize_df",
            "tokenize_folder",
            "read_text_files",
            "TokenizedCorpus",
            "tokenize_corpus",
            "fix_html",
            "replace_rep",
            "replace_wrep",
            "spec_add_spaces",
            "rm_useless_spaces",
            "replace_all_caps",
            "replace_maj",
            "lowercase",
        ],
        "ember.text.tokenize",
    ),
    "Vocab": "ember.text.vocab",
    **dict.fromkeys(
        [
            "LMDataset",
            "ClassificationDataset",
            "TextDataLoaders",
            "TextBlock",
            "lm_dataloaders",
            "classification_dataloaders",
        ],
        "ember.text.data",
    ),
    **dict.fromkeys(
        [
            "AWD_LSTM",
            "awd_lstm_lm_config",
            "awd_lstm_clas_config",
            "TEXT_ARCHS",
            "EmbeddingDropout",
            "RNNDropout",
            "WeightDropout",
            "LinearDecoder",
            "SequentialRNN",
            "SentenceEncoder",
            "PoolingLinearClassifier",
            "get_language_model",
            "get_text_classifier",
            "convert_fastai_awd_lstm",
            "match_embeddings",
        ],
        "ember.text.models",
    ),
    **dict.fromkeys(
        [
            "TextLearner",
            "LMLearner",
            "language_model_learner",
            "text_classifier_learner",
            "ModelResetter",
            "RNNRegularizer",
            "awd_lstm_lm_split",
            "awd_lstm_clas_split",
            "load_pretrained_wt103",
            "pretrained_wt103_files",
        ],
        "ember.text.learner",
    ),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ember.text' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
