"""Tokenization: text -> preprocessed text -> word tokens, fast, on every core, with an on-disk cache.

The default tokenizer works on whole strings: each preprocessing rule is one compiled ``re.sub`` over a
text, and splitting into tokens is one ``findall``. No per-character Python code runs and no token
object is built beyond the strings returned, which makes it an order of magnitude faster than a
spaCy pipeline while producing the same kind of English word tokens (punctuation split off,
``n't`` and ``'s`` clitics separated).

Special tokens (all start with ``xx`` so they can never be confused with words):

- ``xxunk`` unknown word, ``xxpad`` padding, ``xxbos`` beginning of a text, ``xxeos`` end of a text,
- ``xxfld`` start of a field (several text columns), ``xxrep n c`` a character repeated ``n`` times,
  ``xxwrep n w`` a word repeated ``n`` times, ``xxup`` the next word was in capitals, ``xxmaj`` the
  next word was capitalized (everything is lower-cased after marking).

>>> Tokenizer()(["Hello WORLD, it's grrrreat!"])
[['xxbos', 'xxmaj', 'hello', 'xxup', 'world', ',', 'it', "'s", 'g', 'xxrep', '4', 'r', 'eat', '!']]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import os
import re
import shutil
import types
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ember.core import recipe
from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import register_recipe

__all__ = [
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
    "fix_html",
    "replace_rep",
    "replace_wrep",
    "spec_add_spaces",
    "rm_useless_spaces",
    "replace_all_caps",
    "replace_maj",
    "lowercase",
    "DEFAULT_RULES",
    "RULES",
    "WordTokenizer",
    "Tokenizer",
    "SpacyTokenizer",
    "SubwordTokenizer",
    "tokenize_texts",
    "tokenize_df",
    "read_text_files",
    "tokenize_folder",
    "TokenizedCorpus",
    "tokenize_corpus",
]

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
TK_REP, TK_WREP, TK_UP, TK_MAJ = "xxrep", "xxwrep", "xxup", "xxmaj"
#: Every special token, in the order they take the first ids of a vocabulary (``xxunk`` is 0, ``xxpad`` 1).
SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ)

# Texts above this many characters in all are tokenized by worker processes; below it the pool costs more
# than it saves.
_PARALLEL_MIN_CHARS = 2_000_000

# ---------------------------------------------------------------------------------------------------------------------
# Preprocessing rules: each takes and returns a whole string.

_HTML_FIXES = {
    "#39;": "'",
    "amp;": "&",
    "#146;": "'",
    "nbsp;": " ",
    "#36;": "$",
    "\\n": "\n",
    "quot;": "'",
    "<br />": "\n",
    "<br/>": "\n",
    "<br>": "\n",
    '\\"': '"',
    "<unk>": UNK,
    " @.@ ": ".",
    " @-@ ": "-",
    " @,@ ": ",",
    "\\": " \\ ",
}
_RE_HTML = re.compile("|".join(re.escape(k) for k in sorted(_HTML_FIXES, key=len, reverse=True)))
# Dots are left alone: "..." stays one token (an ellipsis), not "xxrep 3 .". The lookahead finds three equal
# characters first (twice as fast as trying the class and the back-reference at every position).
_RE_REP = re.compile(r"(?=(\S)\1\1)([^\s.])(\2+)")
_RE_SPEC = re.compile(r"([/#\\])")
_RE_SPACES = re.compile(r" {2,}")


def fix_html(text: str) -> str:
    """Undo the HTML escapes and markup common in scraped text (``<br />``, ``&amp;``, ``#39;`` ...)."""
    # Whole entities first ("&amp;"), then the bare remains scrapers often leave ("amp;", "#39;").
    if "&" in text:
        text = html.unescape(text)
    return _RE_HTML.sub(lambda m: _HTML_FIXES[m.group(0)], text)


def replace_rep(text: str) -> str:
    """``"grrrrreat"`` -> ``"g xxrep 5 r eat"``: a character repeated 3+ times becomes a count (as in fastai)."""
    return _RE_REP.sub(lambda m: f" {TK_REP} {len(m.group(3)) + 1} {m.group(2)} ", text)


def replace_wrep(text: str) -> str:
    """``"very very very good"`` -> ``"xxwrep 3 very good"``: a word repeated 3+ times becomes a count.

    Punctuation may follow the last repeat (``"no no no!"`` -> ``"xxwrep 3 no!"``), as in fastai.
    """
    return _patterns().wrep.sub(lambda m: f"{TK_WREP} {len(m.group(2).split()) + 1} {m.group(1)}", text)


def spec_add_spaces(text: str) -> str:
    """Put spaces around ``/``, ``#`` and ``\\`` so that they become tokens of their own."""
    return _RE_SPEC.sub(r" \1 ", text)


def rm_useless_spaces(text: str) -> str:
    """Collapse runs of spaces into one."""
    return _RE_SPACES.sub(" ", text)


# Apostrophes that may join two parts of a word ("don't", "O'Brien") or start a clitic ("'s"): the ASCII one and
# the typographic one (U+2019), so that "don’t" is split as "don't" is.
_APOS = "['\u2019]"
# The clitics split off their word: 's 'd 'm 're 've 'll (in any case).
_CLITIC = "(?:[sdmSDM]|[rR][eE]|[vV][eE]|[lL][lL])"


@dataclass(frozen=True)
class _Patterns:
    all_caps: re.Pattern[str]
    maj: re.Pattern[str]
    wrep: re.Pattern[str]
    nt: re.Pattern[str]
    token: re.Pattern[str]


def _mark_class() -> str:
    """Character-class body of the Unicode combining marks (categories Mn, Mc, Me), as ranges.

    Python's ``\\w`` leaves them out, so on its own it would cut Devanagari, vowelled Arabic or Hebrew, and any
    decomposed (NFD) text, at every vowel sign or accent. Built from ``unicodedata`` over the Basic Multilingual Plane
    (marks beyond it, in historic scripts, would turn the class into a slow list of ranges).
    """
    category = unicodedata.category
    ranges: list[list[int]] = []
    for cp in range(0x10000):
        if category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "") for a, b in ranges)


@lru_cache(maxsize=1)
def _patterns() -> _Patterns:
    """The compiled patterns of the case and repetition rules and of :class:`WordTokenizer`, built once.

    Python's ``re`` has no ``\\p{Lu}``: the upper- and lower-case classes are built from ``str.isupper`` and
    ``str.islower`` over the alphabetic scripts below U+2C00 (Latin, Greek, Cyrillic and more), the mark class from
    ``unicodedata`` (see :func:`_mark_class`).
    """
    chars = [chr(i) for i in range(0x2C00)]
    upper = "".join(re.escape(c) for c in chars if c.isupper())
    lower = "".join(re.escape(c) for c in chars if c.islower())
    marks = _mark_class()
    w, a = rf"[\w{marks}]", _APOS
    # A word starts where no word character (or word character and apostrophe) precedes, and ends where none
    # follows; an apostrophe between letters stays inside the word ("DON'T", "I'm").
    # The case patterns match the word's first capital and look ahead at the rest (a pattern that starts with a
    # character class lets `re` skip ahead fast); the replacement puts the mark before it.
    # All caps: two or more capitals; capitalized: a capital and at least one lower-case letter or digit (a single
    # capital, "I" or "A", gets no mark, as in fastai).
    first, end = rf"[{upper}](?<!{w}[{upper}])(?<!{w}{a}[{upper}])", rf"(?!{w})(?!{a}{w})"
    all_caps = re.compile(rf"{first}(?=[{marks}]*(?:{a}?[{upper}][{marks}]*)+{end})")
    maj = re.compile(rf"{first}(?=[{marks}]*(?:{a}?[{lower}\d][{marks}]*)+{end})")
    # (?=(w+))\1 takes the whole word without backtracking into it.
    wrep = re.compile(rf"\b(?<!{w})(?=({w}+))\1((?:\s+\1){{2,}})(?!{w})")
    # One sub splits "n't" off its word; then one findall: numbers with separators, words (with their marks and
    # inner apostrophes: "o'brien", "rock'n'roll"; "n't" comes out whole), the other clitics, runs of dots or
    # dashes, line breaks and tabs (a run of them is one token, as in fastai), any other single visible character.
    # Case variants are spelled out: re.IGNORECASE slows every alternative down by about 10%.
    nt = re.compile(rf"[nN](?<={w}[nN]){a}[tT](?!{w})")
    # The leading lookahead skips spaces before trying the alternatives (a third faster on English text).
    token = re.compile(
        rf"(?=[^ ])(?:\d+(?:[.,:]\d+)+|{w}+(?:{a}(?!{_CLITIC}(?!{w})){w}+)*|{a}{_CLITIC}(?!{w})"
        r"|\.{2,}|-{2,}|[\r\n\t](?:[ \r\n\t]*[\r\n\t])?|[^\w\s])"
    )
    return _Patterns(all_caps, maj, wrep, nt, token)


def replace_all_caps(text: str) -> str:
    """Mark words of two or more capitals with ``xxup`` (``"STOP it"`` -> ``"xxup STOP it"``, ``"DON'T"`` too)."""
    return _patterns().all_caps.sub(rf"{TK_UP} \g<0>", text)


def replace_maj(text: str) -> str:
    """Mark capitalized words with ``xxmaj`` (``"Hello"`` -> ``"xxmaj Hello"``); run after `replace_all_caps`.

    A single capital letter (``"I"``, ``"A"``) is not marked.
    """
    return _patterns().maj.sub(rf"{TK_MAJ} \g<0>", text)


def lowercase(text: str) -> str:
    """Lower-case the whole text (the case information is kept by the ``xxup``/``xxmaj`` marks) and strip the
    white space at its ends, so a file's final line break is not a token."""
    return text.lower().strip()


#: The default preprocessing, in order.
DEFAULT_RULES: tuple[Callable[[str], str], ...] = (
    fix_html,
    replace_rep,
    replace_wrep,
    spec_add_spaces,
    rm_useless_spaces,
    replace_all_caps,
    replace_maj,
    lowercase,
)

#: ember's preprocessing rules by name: the only rules an exported tokenizer can name (a file never names code).
RULES: dict[str, Callable[[str], str]] = {rule.__name__: rule for rule in DEFAULT_RULES}


def _rule_name(rule: Callable[[str], str]) -> str:
    """The name under which `rule` is written to a recipe; ExportError for a function that is not ember's."""
    name = getattr(rule, "__name__", None)
    if name is None or RULES.get(name) is not rule:
        where = f"{getattr(rule, '__module__', '?')}.{getattr(rule, '__qualname__', repr(rule))}"
        raise ExportError(
            f"The tokenizer rule {where} is not one of ember's rules, so it cannot be written to a file (a file "
            f"never holds code). Use ember's rules ({', '.join(RULES)}), or preprocess the texts yourself before "
            "predicting and export a Tokenizer without that rule."
        )
    return name


def _rule_from_name(name: Any) -> Callable[[str], str]:
    rule = RULES.get(name) if isinstance(name, str) else None
    if rule is None:
        raise ExportError(expected("the name of one of ember's tokenizer rules", "rules", name, valid=list(RULES)))
    return rule


def _digest(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        b = str(part).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _const_repr(c: Any) -> str:
    """A constant of a function's code as text that is the same in every run: nested code by its digest, and
    sets in sorted order (their repr follows the process's hash seed)."""
    if isinstance(c, types.CodeType):
        return _code_digest(c)
    if isinstance(c, (frozenset, set)):
        return "{" + ", ".join(sorted(_const_repr(x) for x in c)) + "}"
    if isinstance(c, tuple):
        return "(" + ", ".join(_const_repr(x) for x in c) + ")"
    return repr(c)


def _code_digest(code: types.CodeType) -> str:
    """A digest of a function's code: its bytecode, names and constants (nested functions' code included)."""
    consts = [_const_repr(c) for c in code.co_consts]
    return _digest(code.co_code.hex(), code.co_names, consts)


@lru_cache(maxsize=1)
def _ember_rules_digest() -> str:
    """A digest of ember's rules (their code and patterns): cached tokens of another ember version are not reused."""
    p = _patterns()
    patterns = (_RE_HTML.pattern, _RE_REP.pattern, _RE_SPEC.pattern, _RE_SPACES.pattern, p.all_caps.pattern)
    return _digest(
        *patterns,
        p.maj.pattern,
        p.wrep.pattern,
        sorted(_HTML_FIXES.items()),
        [_code_digest(r.__code__) for r in RULES.values()],
    )


def _callable_id(fn: Any) -> str | None:
    """What identifies the output of a rule or word-tokenizer function (part of the cache key).

    ember's rules: their name and :func:`_ember_rules_digest`. A function of your own defined at the top level of a
    module: its qualified name and a digest of its code and defaults, so editing its body changes the key. ``None``
    when the output cannot be identified reliably: a lambda, a nested function or closure (it reads variables the
    digest cannot see), a ``functools.partial`` or another callable object (those need a ``settings()`` method).
    """
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and RULES.get(name) is fn:
        return f"ember.{name}:{_ember_rules_digest()}"
    if isinstance(fn, (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)):
        owner = getattr(fn, "__module__", None) or getattr(getattr(fn, "__objclass__", None), "__module__", "")
        return f"{owner}.{fn.__qualname__}"
    if (
        isinstance(fn, types.FunctionType)
        and fn.__name__ != "<lambda>"
        and "<locals>" not in fn.__qualname__
        and not fn.__closure__
    ):
        code = _code_digest(fn.__code__)
        return f"{fn.__module__}.{fn.__qualname__}:{_digest(code, repr(fn.__defaults__), repr(fn.__kwdefaults__))}"
    return None


def _describe(fn: Any) -> str:
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(named, '__module__', '?')}.{named.__qualname__}"


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizers


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


def _import_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as e:
        raise ConfigError(
            "SubwordTokenizer needs the sentencepiece package, which is not installed. Run "
            "`pip install 'ember[sentencepiece]'`, or use the default WordTokenizer()."
        ) from e
    return sentencepiece


_SP_MODEL_TYPES = ("unigram", "bpe", "char", "word")


@register_recipe()
class SubwordTokenizer:
    """SentencePiece subwords (an optional extra: ``pip install 'ember[sentencepiece]'``), learned from the texts.

    :meth:`setup` trains a SentencePiece model on the training texts; ember's special tokens are declared to it as
    user-defined symbols, so ``xxmaj``, ``xxbos`` ... always come out as single pieces. Use it as the word tokenizer
    of a :class:`Tokenizer`; ``TextDataLoaders`` and ``TextBlock`` train it on the training split, before any text is
    tokenized. Pieces carry SentencePiece's ``▁`` where a space was, so :meth:`decode` gives the text back.

    Export writes the trained model into the recipe as base64 text (4/3 of the model file: about 320 KB for a small
    vocabulary, most of it SentencePiece's Unicode normalization table), so a loaded learner tokenizes exactly as the
    one that was exported.

    >>> tok = SubwordTokenizer(vocab_sz=200).setup(train_texts)  # doctest: +SKIP
    >>> tok(["unbelievable"])  # doctest: +SKIP
    [['▁un', 'believ', 'able']]

    Args:
        vocab_sz: the most pieces in the model (fewer when the texts do not support that many). ``None``: a quarter
            of the number of distinct words, at most 30,000 and at least the characters plus the special tokens.
        model_type: SentencePiece's algorithm: ``"unigram"``, ``"bpe"``, ``"char"`` or ``"word"``.
        char_coverage: the share of characters the model covers (the rarest others become ``xxunk``). ``None``:
            0.99999, or 0.9995 when the texts hold more than 1,000 distinct characters (e.g. Chinese, Japanese).
        max_sentence_len: training reads each line of a text as a sentence; longer lines are cut to this many
            bytes.
        special_toks: the tokens kept whole (default: ember's :data:`SPECIAL_TOKENS`).
        cache_dir: keep trained models there, keyed by the texts and settings; training again on the same texts
            reads the model back instead. ``None``: train in memory, write nothing.
        sp_model: an already trained model: its bytes or the path of a ``.model`` file (no :meth:`setup` needed).

    Raises:
        ConfigError: sentencepiece is not installed, or an argument is invalid.
    """

    name = "subword"

    def __init__(
        self,
        vocab_sz: int | None = None,
        model_type: str = "unigram",
        char_coverage: float | None = None,
        max_sentence_len: int = 20000,
        special_toks: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        sp_model: bytes | str | os.PathLike | None = None,
    ) -> None:
        self._spm = _import_sentencepiece()
        if vocab_sz is not None and (isinstance(vocab_sz, bool) or not isinstance(vocab_sz, int) or vocab_sz < 1):
            raise ConfigError(expected("None or an int >= 1", "vocab_sz", vocab_sz))
        if model_type not in _SP_MODEL_TYPES:
            raise ConfigError(expected("a SentencePiece model type", "model_type", model_type, valid=_SP_MODEL_TYPES))
        if char_coverage is not None and not (isinstance(char_coverage, (int, float)) and 0 < char_coverage <= 1):
            raise ConfigError(expected("None or a number in (0, 1]", "char_coverage", char_coverage))
        if isinstance(max_sentence_len, bool) or not isinstance(max_sentence_len, int) or max_sentence_len < 16:
            raise ConfigError(expected("an int >= 16 (bytes)", "max_sentence_len", max_sentence_len))
        specials = tuple(SPECIAL_TOKENS if special_toks is None else special_toks)
        if not all(isinstance(t, str) and t and not t.isspace() for t in specials):
            raise ConfigError(expected("a list of non-empty str", "special_toks", special_toks))
        self.vocab_sz, self.model_type, self.char_coverage = vocab_sz, model_type, char_coverage
        self.max_sentence_len, self.special_toks = max_sentence_len, specials
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.sp_model: bytes | None = None  # the trained model (a serialized SentencePiece ModelProto)
        self._proc: Any = None
        self._pieces: list[str] = []
        self._digest = ""
        if sp_model is not None:
            self._load(_read_sp_model(sp_model))

    @property
    def needs_setup(self) -> bool:
        """Whether the model still has to be trained (:meth:`setup`)."""
        return self.sp_model is None

    @property
    def pieces(self) -> list[str]:
        """Every piece of the trained model, in SentencePiece id order (the unknown piece written ``xxunk``)."""
        return list(self._pieces)

    def _load(self, model: bytes) -> None:
        try:
            proc = self._spm.SentencePieceProcessor(model_proto=model)
        except (RuntimeError, TypeError) as e:
            raise DataError(f"The SentencePiece model could not be read ({e}); give the bytes of a .model file.") from e
        pieces = [proc.id_to_piece(i) for i in range(proc.get_piece_size())]
        # SentencePiece's own unknown piece ("<unk>") becomes ember's, so that a Vocab maps it to xxunk.
        if proc.unk_id() >= 0:
            pieces[proc.unk_id()] = UNK
        self.sp_model, self._proc, self._pieces = bytes(model), proc, pieces
        self._digest = hashlib.blake2b(self.sp_model, digest_size=16).hexdigest()

    def _train_options(self, texts: list[str]) -> dict[str, Any]:
        chars: set[str] = set()
        for t in texts:
            chars.update(t)
        coverage = self.char_coverage
        if coverage is None:
            coverage = 0.9995 if len(chars) > 1000 else 0.99999
        vocab_sz = self.vocab_sz
        if vocab_sz is None:
            words: set[str] = set()
            for t in texts:
                words.update(t.split())
            floor = len(chars) + len(self.special_toks) + 1  # every character, the special tokens, the unknown piece
            vocab_sz = max(floor, min(30000, len(words) // 4))
            vocab_sz += -vocab_sz % 8
        return {
            "model_type": self.model_type,
            "vocab_size": vocab_sz,
            "character_coverage": float(coverage),
            "max_sentence_length": self.max_sentence_len,
            "user_defined_symbols": list(self.special_toks),
            # vocab_size is the most pieces: a small corpus gives fewer instead of failing.
            "hard_vocab_limit": False,
            # Only the unknown piece: ember adds xxbos/xxeos itself and pads with xxpad.
            "unk_id": 0,
            "bos_id": -1,
            "eos_id": -1,
            "pad_id": -1,
        }

    def _sentences(self, texts: list[str]) -> Iterable[str]:
        """Each non-empty line of each text, cut to `max_sentence_len` bytes (SentencePiece skips longer ones)."""
        # A UTF-8 character takes at most 4 bytes, so chunks of max_sentence_len // 4 characters always fit.
        limit, chunk = self.max_sentence_len, max(1, self.max_sentence_len // 4)
        for text in texts:
            for line in text.splitlines():
                if not line.strip():
                    continue
                if len(line) <= chunk or len(line.encode("utf-8")) <= limit:
                    yield line
                else:
                    yield from (line[i : i + chunk] for i in range(0, len(line), chunk))

    def setup(self, texts: Iterable[str]) -> SubwordTokenizer:
        """Train the model on `texts` (the training split) unless it is already trained; returns self.

        Raises:
            DataError: the texts are not strings, are empty, or cannot support `vocab_sz` (the message says
                what to change).
        """
        if not self.needs_setup:
            return self
        texts = [_check_text(t, i) for i, t in enumerate(texts)]
        options = self._train_options(texts)
        file = None
        if self.cache_dir is not None:
            file = self.cache_dir / f"subword-{_cache_key('subword', texts, options)}.model"
            if file.is_file():
                self._load(file.read_bytes())
                return self
        sentences = list(self._sentences(texts))
        if not sentences:
            raise DataError("SubwordTokenizer.setup received no text to learn from; give it the training texts.")
        import io

        out = io.BytesIO()
        try:
            self._spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=out, minloglevel=2, **options
            )
        except RuntimeError as e:
            raise DataError(
                f"SentencePiece could not train on these texts with vocab_sz={options['vocab_size']} "
                f"(model_type={self.model_type!r}): {e}. A vocabulary must hold at least every kept character and "
                "the special tokens: raise `vocab_sz`, or lower `char_coverage`."
            ) from e
        self._load(out.getvalue())
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
            tmp.write_bytes(self.sp_model)
            os.replace(tmp, file)  # never a half-written model under the final name
        return self

    def __call__(self, texts: Iterable[str]) -> list[list[str]]:
        if self._proc is None:
            raise _untrained_error()
        pieces = self._pieces
        # Ids, then pieces: unknown characters come out as xxunk rather than as their own surface strings.
        return [list(map(pieces.__getitem__, ids)) for ids in self._proc.encode(list(texts))]

    def decode(self, tokens: Sequence[str]) -> str:
        """Pieces -> text: the inverse of calling the tokenizer (up to SentencePiece's normalization)."""
        if self._proc is None:
            raise _untrained_error()
        return self._proc.decode_pieces(list(tokens))

    def settings(self) -> dict[str, Any]:
        """What identifies this tokenizer's output (part of the cache key): the trained model's digest."""
        if self.sp_model is not None:
            return {"name": self.name, "model": self._digest}
        return {"name": self.name, "untrained": self.to_recipe()}

    def __repr__(self) -> str:
        state = f"{len(self._pieces)} pieces" if self.sp_model is not None else "not trained"
        return f"SubwordTokenizer(vocab_sz={self.vocab_sz}, model_type={self.model_type!r}; {state})"

    # The SentencePiece processor is rebuilt from the model bytes in worker processes rather than pickled.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.to_recipe(), "cache_dir": str(self.cache_dir) if self.cache_dir is not None else None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = type(self).from_recipe(state)
        self.__dict__.update(other.__dict__)
        self.cache_dir = Path(state["cache_dir"]) if state.get("cache_dir") else None

    def to_recipe(self) -> dict[str, Any]:
        """The settings and the trained model as base64 text (``None`` before :meth:`setup`)."""
        model = base64.b64encode(self.sp_model).decode("ascii") if self.sp_model is not None else None
        return {
            "vocab_sz": self.vocab_sz,
            "model_type": self.model_type,
            "char_coverage": self.char_coverage,
            "max_sentence_len": self.max_sentence_len,
            "special_toks": list(self.special_toks),
            "sp_model": model,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> SubwordTokenizer:
        """Rebuild what :meth:`to_recipe` wrote.

        Raises:
            ConfigError: sentencepiece is not installed (the message says how to install it).
            ExportError: the model text is not valid base64.
        """
        model = data.get("sp_model")
        if model is not None:
            try:
                model = base64.b64decode(model.encode("ascii"), validate=True)
            except (AttributeError, UnicodeEncodeError, binascii.Error) as e:
                raise ExportError(f"The exported SubwordTokenizer's model is not valid base64 text ({e}).") from e
        return cls(
            vocab_sz=data.get("vocab_sz"),
            model_type=data.get("model_type", "unigram"),
            char_coverage=data.get("char_coverage"),
            max_sentence_len=data.get("max_sentence_len", 20000),
            special_toks=data.get("special_toks"),
            sp_model=model,
        )


def _untrained_error() -> ConfigError:
    return ConfigError(
        "The SubwordTokenizer is not trained yet. Call `setup(train_texts)` first (TextDataLoaders and TextBlock do it "
        "on the training texts when they build the vocabulary), pass `sp_model=` a trained model, or, with a given "
        "`vocab`, pass the tokenizer that made it (e.g. `tok=dls_lm.tokenizer`)."
    )


def _read_sp_model(model: bytes | str | os.PathLike) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise DataError(f"Expected `sp_model` to be a SentencePiece .model file; {path} does not exist.")
        return path.read_bytes()
    raise ConfigError(expected("the bytes or the path of a SentencePiece model", "sp_model", type(model).__name__))


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


# Joins a text's tokens in a worker: one string per text pickles far faster than a list of strings.
_SEP = "\x00"


def _tokenize_joined(tok: Tokenizer, texts: list[str]) -> tuple[list[str], list[int]]:
    """Worker body: each text's tokens joined by ``\\x00``, and their numbers (to check the split)."""
    out = tok(texts)
    return [_SEP.join(toks) for toks in out], [len(toks) for toks in out]


def _picklable(obj: Any) -> bool:
    import pickle

    try:
        pickle.dumps(obj)  # only to hand the tokenizer to the worker processes; nothing is stored
    except Exception:
        return False
    return True


def tokenize_texts(texts: Sequence[str], tok: Tokenizer | None = None, n_workers: int | None = None) -> list[list[str]]:
    """Tokenize many texts, on every core when there is enough text to pay for the worker processes.

    Args:
        texts: the texts.
        tok: a :class:`Tokenizer` (default: ``Tokenizer()``, the fast word tokenizer with the default rules).
        n_workers: worker processes; ``None`` uses every core, ``0`` or ``1`` tokenizes in this process.

    Returns:
        One list of tokens per text, in order.
    """
    _check_texts(texts)
    tok = tok if tok is not None else Tokenizer()
    texts = list(texts)
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0):
        raise ConfigError(expected("None or an int >= 0", "n_workers", n_workers))
    n_workers = (os.cpu_count() or 1) if n_workers is None else n_workers
    total = sum(len(t) for t in texts if isinstance(t, str))
    if n_workers <= 1 or total < _PARALLEL_MIN_CHARS or len(texts) < 2:
        return tok(texts)
    if not _picklable(tok):
        warnings.warn(
            f"The tokenizer {tok!r} cannot be sent to worker processes (it is not picklable: a lambda or a nested "
            "function?), so the texts are tokenized in this process. Define its functions at the top level of a "
            "module to use every core, or pass n_workers=0 to silence this warning.",
            stacklevel=2,
        )
        return tok(texts)
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    _patterns()  # built once here, inherited by forked workers
    # Chunks of similar total length, a few per worker so that uneven texts still balance.
    n_chunks = min(len(texts), n_workers * 4)
    bounds = np.linspace(0, len(texts), n_chunks + 1).astype(int)
    chunks = [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    out: list[list[str]] = []
    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        for joined, counts in pool.map(partial(_tokenize_joined, tok), chunks):
            for s, n in zip(joined, counts):
                toks = s.split(_SEP) if n else []
                if len(toks) != n:  # a token held the separator: tokenize that text here instead
                    toks = tok([texts[len(out)]])[0]
                out.append(toks)
    return out


def tokenize_df(
    df: Any,
    text_cols: str | Sequence[str],
    tok: Tokenizer | None = None,
    n_workers: int | None = None,
    mark_fields: bool | None = None,
) -> list[list[str]]:
    """Tokenize the text column(s) of a DataFrame, one token list per row.

    Args:
        text_cols: a column name or several; several are joined, each preceded by ``xxfld <n>``.
        mark_fields: add the ``xxfld`` marks (default: when there is more than one column).

    Raises:
        DataError: a column is missing or holds a missing value.
    """
    cols = [text_cols] if isinstance(text_cols, str) else list(text_cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(expected("columns of the DataFrame", "text_cols", missing, valid=list(df.columns)))
    for c in cols:
        bad = df[c].isna()
        if bad.any():
            row = df.index[bad.to_numpy().nonzero()[0][0]]
            raise DataError(f"Column {c!r} has a missing text at row {row!r}; fill or drop it first.")
    mark = len(cols) > 1 if mark_fields is None else mark_fields
    if mark:
        parts = [f"{FLD} {i + 1} " + df[c].astype(str) for i, c in enumerate(cols)]
        texts = parts[0]
        for p in parts[1:]:
            texts = texts + " " + p
        texts = texts.tolist()
    else:
        texts = df[cols[0]].astype(str).tolist()
    return tokenize_texts(texts, tok=tok, n_workers=n_workers)


def read_text_files(files: Sequence[str | os.PathLike]) -> list[str]:
    """Read UTF-8 text files; a file that is not valid UTF-8 is reported by name."""
    texts = []
    for f in files:
        try:
            texts.append(Path(f).read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{f} is not valid UTF-8 text ({e}); convert it or leave it out.") from e
    return texts


def _text_files(path: Path, extensions: Sequence[str], folders: Sequence[str] | None) -> list[Path]:
    roots = [path / f for f in folders] if folders else [path]
    exts = {e.lower() for e in extensions}
    return sorted(p for r in roots for p in r.rglob("*") if p.suffix.lower() in exts and p.is_file())


def tokenize_folder(
    path: str | os.PathLike,
    extensions: Sequence[str] = (".txt",),
    folders: Sequence[str] | None = None,
    tok: Tokenizer | None = None,
    n_workers: int | None = None,
) -> tuple[list[Path], list[list[str]]]:
    """Tokenize every text file under `path` (or under its subfolders `folders`).

    Returns:
        ``(files, tokens)``: the files in sorted order and one token list per file.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"Expected `path` to be a folder of text files; {path} is not a folder.")
    files = _text_files(path, extensions, folders)
    return files, tokenize_texts(read_text_files(files), tok=tok, n_workers=n_workers)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenized and numericalized corpora, cached on disk.


@dataclass
class TokenizedCorpus:
    """Token ids of many texts, stored flat: text ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    Attributes:
        ids: int32 token ids of every text, one after another (a memory-mapped array when read from the cache).
        offsets: int64 start of each text in `ids`, plus the total length at the end (``len(texts) + 1`` values).
        vocab: the :class:`~ember.text.vocab.Vocab` the ids refer to.
    """

    ids: np.ndarray
    offsets: np.ndarray
    vocab: Any

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def subset(self, idxs: Sequence[int] | np.ndarray) -> TokenizedCorpus:
        """The texts at `idxs`, copied into a new flat array (same vocab)."""
        idxs = np.asarray(idxs, dtype=np.int64)
        starts, lens = self.offsets[idxs], np.diff(self.offsets)[idxs]
        return TokenizedCorpus(self.ids[_gather_index(starts, lens)], _offsets(lens), self.vocab)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _gather_index(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Indices of the concatenation of the slices ``[starts[i], starts[i] + lens[i])`` (vectorized, no loop)."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # Each output position = its slice's start + (position - where that slice begins in the output).
    out_starts = _offsets(lens)[:-1]
    return np.repeat(starts - out_starts, lens) + np.arange(total, dtype=np.int64)


def _cache_key(kind: str, content: Any, settings: dict[str, Any]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"kind": kind, "settings": settings}, sort_keys=True, default=str).encode())
    if isinstance(content, list):
        for t in content:
            b = t.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        h.update(str(content).encode())
    return h.hexdigest()


def tokenize_corpus(
    texts: Sequence[str] | None = None,
    tok: Tokenizer | None = None,
    vocab: Any = None,
    min_freq: int = 3,
    max_vocab: int = 60000,
    n_workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    files: Sequence[str | os.PathLike] | None = None,
) -> TokenizedCorpus:
    """Tokenize and numericalize texts (or text files) into a flat :class:`TokenizedCorpus`, with a disk cache.

    With `cache_dir`, the ids, offsets and vocabulary are written under ``cache_dir/<key>/`` where the key
    hashes the inputs (the texts, or the files' paths, sizes and modification times) and every setting
    (tokenizer, rules, vocabulary). A later call with the same inputs memory-maps the ids and returns at once.

    When the vocabulary is built here (`vocab` is None), these are training texts: a tokenizer that learns from
    data and is not trained yet (:class:`SubwordTokenizer`) is trained on them first (``tok.setup``).

    Args:
        texts: the texts; or give `files` instead.
        vocab: a :class:`~ember.text.vocab.Vocab` to use; ``None`` builds one from these texts.
        min_freq: least count for a word to enter a built vocabulary.
        max_vocab: most words in a built vocabulary.
        files: text files to read (instead of `texts`).

    Raises:
        ConfigError: neither or both of `texts` and `files` given.
    """
    from ember.text.vocab import Vocab

    if (texts is None) == (files is None):
        raise ConfigError("Expected exactly one of `texts` and `files`; received " + ("both." if texts else "neither."))
    tok = tok if tok is not None else Tokenizer()
    if vocab is None and getattr(tok, "needs_setup", False):
        # Before the cache key: the key names the trained model, not the untrained settings.
        if texts is None:
            texts = read_text_files(files)
        tok.setup(texts)
    tok_id = _tokenizer_id(tok)
    if cache_dir is not None and tok_id is None:
        unknown = tok._unidentified() if isinstance(tok, Tokenizer) else [_describe(tok)]
        warnings.warn(
            f"Tokens are not cached: the output of {', '.join(unknown)} cannot be identified (a lambda, a nested "
            "function or closure, or an object without a settings() method), so a cached result could be stale. "
            "Define it as a function at the top level of a module to cache the tokens.",
            stacklevel=2,
        )
        cache_dir = None
    settings = {"tok": tok_id, "min_freq": min_freq, "max_vocab": max_vocab}
    settings["vocab"] = vocab.itos if vocab is not None else None
    folder: Path | None = None
    if cache_dir is not None:
        if files is not None:
            stats = [(str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
            key = _cache_key("files", json.dumps(stats), settings)
        else:
            key = _cache_key("texts", list(texts), settings)
        folder = Path(cache_dir) / key
        if (folder / "meta.json").is_file():
            ids = np.load(folder / "ids.npy", mmap_mode="r")
            offsets = np.load(folder / "offsets.npy")
            return TokenizedCorpus(ids, offsets, Vocab.from_json(folder / "vocab.json"))
    if texts is None:
        texts = read_text_files(files)
    tokens = tokenize_texts(texts, tok=tok, n_workers=n_workers)
    if vocab is None:
        vocab = _build_vocab(tokens, tok, min_freq=min_freq, max_vocab=max_vocab)
    lens = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    ids = vocab.numericalize_flat(tokens)
    corpus = TokenizedCorpus(ids, _offsets(lens), vocab)
    if folder is not None:
        _write_cache(folder, corpus)
        corpus.ids = np.load(folder / "ids.npy", mmap_mode="r")
    return corpus


def _tokenizer_id(tok: Any) -> Any:
    """:meth:`Tokenizer.settings` (or another tokenizer's ``settings()``, or a function's id); None when the output
    cannot be identified."""
    if isinstance(tok, Tokenizer):
        return tok.settings() if tok.cacheable else None
    if hasattr(tok, "settings"):
        return tok.settings()
    return _callable_id(tok)


def _build_vocab(tokens: Iterable[Sequence[str]], tok: Any = None, min_freq: int = 3, max_vocab: int = 60000) -> Any:
    """The :class:`~ember.text.vocab.Vocab` of tokenized training texts, made by the tokenizer `tok`.

    Words need `min_freq` occurrences; the pieces of a subword model (:class:`SubwordTokenizer`, alone or inside a
    :class:`Tokenizer`) all get an id, the rare and the unseen ones after the others: the model chose them as its
    vocabulary, and whatever it emits for a new text must not become ``xxunk``.
    """
    from ember.text.vocab import Vocab

    counts: Counter = Counter()
    for toks in tokens:
        counts.update(toks)
    pieces = getattr(tok, "pieces", None) if isinstance(tok, SubwordTokenizer) else None
    if isinstance(tok, Tokenizer) and isinstance(tok.tok, SubwordTokenizer):
        pieces = tok.tok.pieces
    for piece in pieces or ():
        counts[piece] = max(counts[piece], min_freq)
    return Vocab.from_counter(counts, min_freq=min_freq, max_vocab=max_vocab)


def _write_cache(folder: Path, corpus: TokenizedCorpus) -> None:
    """Write to a temporary folder renamed at the end, so an interrupted run never leaves a half cache."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    np.save(tmp / "ids.npy", np.ascontiguousarray(corpus.ids, dtype=np.int32))
    np.save(tmp / "offsets.npy", corpus.offsets)
    corpus.vocab.to_json(tmp / "vocab.json")
    (tmp / "meta.json").write_text(json.dumps({"n_texts": len(corpus), "n_tokens": int(corpus.offsets[-1])}))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
