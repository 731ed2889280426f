"""Tokenizers: the word tokenizers and :class:`Tokenizer`, which runs the preprocessing rules and then one of them.

The default word tokenizer works on whole strings: splitting into tokens is one compiled ``findall``, and no token
object is built beyond the strings returned, which makes it an order of magnitude faster than a spaCy pipeline while
producing the same kind of English word tokens (punctuation split off, ``n't`` and ``'s`` clitics separated).
SentencePiece subwords are in :mod:`ember.text.subword`.

>>> Tokenizer()(["Hello WORLD, it's grrrreat!"])
[['xxbos', 'xxmaj', 'hello', 'xxup', 'world', ',', 'it', "'s", 'g', 'xxrep', '4', 'r', 'eat', '!']]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ember.core import recipe
from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import register_recipe
from ember.text.cache_keys import _callable_id, _describe, _digest
from ember.text.rules import BOS, DEFAULT_RULES, EOS, RULES, SPECIAL_TOKENS, _patterns, _rule_from_name, _rule_name

__all__ = ["WordTokenizer", "SpacyTokenizer", "Tokenizer"]


@register_recipe()
class WordTokenizer:
    """Split texts into English word and punctuation tokens with compiled regular expressions.

    Callable on a list of strings; returns one list of tokens per string. Unicode letters, digits and combining
    marks form words, an apostrophe (``'`` or ``’``) between letters stays inside one (``o'brien``); a run of line
    breaks and tabs is one token; every other visible character is a token of its own (``...`` and ``--`` stay
    whole); the clitics ``n't 's 're 've 'll 'd 'm`` are separate tokens, as spaCy makes them.

    >>> WordTokenizer()(["Don't stop: 3.14 isn't pi..."])
    [['Do', "n't", 'stop', ':', '3.14', 'is', "n't", 'pi', '...']]
    """

    name = "word"

    def __call__(self, texts: Iterable[str]) -> list[list[str]]:
        p = _patterns()
        findall, sub = p.token.findall, p.nt.sub
        return [findall(sub(r" \g<0>", t)) for t in texts]

    def settings(self) -> dict[str, Any]:
        """What identifies this tokenizer's output (part of the cache key)."""
        p = _patterns()
        return {"name": self.name, "pattern": _digest(p.nt.pattern, p.token.pattern)}

    def to_recipe(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> WordTokenizer:
        return cls()


@register_recipe()
class SpacyTokenizer:
    """spaCy's rule-based English tokenizer (an optional extra: ``pip install spacy``), for parity with fastai.

    Args:
        lang: the spaCy language code.
    """

    name = "spacy"

    def __init__(self, lang: str = "en") -> None:
        try:
            import spacy
        except ImportError as e:
            raise ConfigError(
                "SpacyTokenizer needs spaCy, which is not installed. Run `pip install spacy`, "
                "or use the default WordTokenizer()."
            ) from e
        self.lang = lang
        self._nlp = spacy.blank(lang)

    def __call__(self, texts: Iterable[str]) -> list[list[str]]:
        return [[t.text for t in doc if not t.is_space] for doc in self._nlp.pipe(list(texts))]

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "lang": self.lang}

    def __getstate__(self) -> dict[str, Any]:
        return {"lang": self.lang}  # spaCy pipelines are rebuilt in each worker rather than pickled

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["lang"])

    def to_recipe(self) -> dict[str, Any]:
        return {"lang": self.lang}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> SpacyTokenizer:
        return cls(data.get("lang", "en"))


def _untrained_error() -> ConfigError:
    return ConfigError(
        "The SubwordTokenizer is not trained yet. Call `setup(train_texts)` first (TextDataLoaders and TextBlock do it "
        "on the training texts when they build the vocabulary), pass `sp_model=` a trained model, or, with a given "
        "`vocab`, pass the tokenizer that made it (e.g. `tok=dls_lm.tokenizer`)."
    )


@register_recipe()
class Tokenizer:
    """Preprocessing rules, then a word tokenizer, with ``xxbos`` (and optionally ``xxeos``) around each text.

    Exportable (:meth:`to_recipe`) when its rules are ember's (:data:`RULES`) and its word tokenizer is
    :class:`WordTokenizer`, :class:`SpacyTokenizer` or :class:`SubwordTokenizer`: the file names them (and holds a
    subword model's data), never code.

    A word tokenizer that learns from data (:class:`SubwordTokenizer`) is trained by :meth:`setup` on the
    preprocessed training texts before the first call.

    Args:
        tok: the word tokenizer (default :class:`WordTokenizer`); any callable ``list[str] -> list[list[str]]``.
        rules: functions ``str -> str`` applied in order to each text before it is split.
        add_bos: start every text with ``xxbos``.
        add_eos: end every text with ``xxeos``.
    """

    def __init__(
        self,
        tok: Callable[[list[str]], list[list[str]]] | None = None,
        rules: Sequence[Callable[[str], str]] | None = None,
        add_bos: bool = True,
        add_eos: bool = False,
    ) -> None:
        self.tok = tok if tok is not None else WordTokenizer()
        if not callable(self.tok):
            raise ConfigError(expected("a callable list[str] -> list[list[str]]", "tok", self.tok))
        self.rules = tuple(DEFAULT_RULES if rules is None else rules)
        self.add_bos, self.add_eos = add_bos, add_eos

    def preprocess(self, text: str) -> str:
        """Apply the rules to one text."""
        for rule in self.rules:
            text = rule(text)
        return text

    @property
    def needs_setup(self) -> bool:
        """Whether the word tokenizer still has to learn from the training texts (see :meth:`setup`)."""
        return bool(getattr(self.tok, "needs_setup", False))

    def setup(self, texts: Iterable[str]) -> Tokenizer:
        """Train a word tokenizer that learns from data on the training `texts`, preprocessed by the rules.

        Does nothing for a fixed word tokenizer (:class:`WordTokenizer`) or one already trained, so a tokenizer
        shared by a language model and its classifier keeps its pieces. Returns self.
        """
        if self.needs_setup:
            self.tok.setup([self.preprocess(_check_text(t, i)) for i, t in enumerate(texts)])
        return self

    def __call__(self, texts: Iterable[str]) -> list[list[str]]:
        _check_texts(texts)
        if self.needs_setup:
            raise _untrained_error()
        texts = [self.preprocess(_check_text(t, i)) for i, t in enumerate(texts)]
        out = self.tok(texts)
        if self.add_bos or self.add_eos:
            head, tail = [BOS] if self.add_bos else [], [EOS] if self.add_eos else []
            out = [head + toks + tail for toks in out]
        return out

    def settings(self) -> dict[str, Any]:
        """What identifies this tokenizer's output (part of the cache key of :func:`tokenize_corpus`).

        ember's rules and word tokenizers are named with a digest of their patterns and code; a function of your
        own (a rule, or the word tokenizer) by its qualified name and a digest of its code; a word tokenizer object
        by its ``settings()`` method. Where the output cannot be identified (a lambda, a nested function or closure,
        a callable object without ``settings()``) the value is ``None`` and :attr:`cacheable` is False.
        """
        if hasattr(self.tok, "settings"):
            tok_settings = self.tok.settings()
        else:
            tok_settings = {"name": type(self.tok).__name__, "id": _callable_id(self.tok)}
        return {
            "tok": tok_settings,
            "rules": [_callable_id(r) for r in self.rules],
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
        }

    @property
    def cacheable(self) -> bool:
        """Whether :meth:`settings` identifies the output, so that tokens can be cached on disk."""
        settings = self.settings()
        return None not in settings["rules"] and settings["tok"].get("id", "") is not None

    def _unidentified(self) -> list[str]:
        """The rules and word tokenizer that :meth:`settings` cannot identify, by name."""
        parts = [r for r in self.rules if _callable_id(r) is None]
        if not hasattr(self.tok, "settings") and _callable_id(self.tok) is None:
            parts.append(self.tok)
        return [_describe(p) for p in parts]

    def __repr__(self) -> str:
        rules = ", ".join(getattr(r, "__name__", repr(r)) for r in self.rules)
        return f"Tokenizer(tok={type(self.tok).__name__}(), rules=[{rules}])"

    def to_recipe(self) -> dict[str, Any]:
        """The word tokenizer, the rules by name, the special tokens and the ``xxbos``/``xxeos`` settings.

        Raises:
            ExportError: a rule or the word tokenizer is the user's own code (the message names it).
        """
        if not recipe.is_registered(self.tok):
            # A function or class is named itself; another object by its class.
            named = self.tok if hasattr(self.tok, "__qualname__") else type(self.tok)
            raise ExportError(
                f"The word tokenizer {named.__module__}.{named.__qualname__} cannot be written to a file: it is not "
                "one of ember's (WordTokenizer, SpacyTokenizer, SubwordTokenizer), and a file never holds code."
            )
        return {
            "tok": recipe.dump(self.tok),
            "rules": [_rule_name(r) for r in self.rules],
            "special_tokens": list(SPECIAL_TOKENS),
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Tokenizer:
        """Rebuild what :meth:`to_recipe` wrote.

        Raises:
            ExportError: a rule is not one of ember's, or the file's special tokens differ from this ember's.
        """
        specials = data.get("special_tokens", list(SPECIAL_TOKENS))
        if list(specials) != list(SPECIAL_TOKENS):
            raise ExportError(
                f"The exported tokenizer uses the special tokens {specials}, this ember {list(SPECIAL_TOKENS)}; "
                "load the file with the ember version that wrote it."
            )
        tok = recipe.load(data["tok"]) if data.get("tok") else WordTokenizer()
        rules = [_rule_from_name(name) for name in data.get("rules", list(RULES))]
        return cls(tok=tok, rules=rules, add_bos=bool(data.get("add_bos", True)), add_eos=bool(data.get("add_eos")))


def _check_text(text: Any, i: int) -> str:
    if isinstance(text, str):
        return text
    raise DataError(f"Expected every text to be a str; received a {type(text).__name__} at position {i}: {text!r:.60}.")


def _check_texts(texts: Any, name: str = "texts") -> None:
    """DataError for a single string where a list of texts is expected (iterating it would give its characters)."""
    if isinstance(texts, (str, bytes)):
        raise DataError(
            f"Expected `{name}` to be a list of texts; received a single {type(texts).__name__} ({texts[:40]!r}). "
            "Wrap it in a list: [text]."
        )
