"""Special tokens and the preprocessing rules: each rule takes and returns a whole string.

Each rule is one compiled ``re.sub`` over a text, so no per-character Python code runs. The case and repetition
rules insert special tokens, all of which start with ``xx`` so they can never be confused with words:

- ``xxunk`` unknown word, ``xxpad`` padding, ``xxbos`` beginning of a text, ``xxeos`` end of a text,
- ``xxfld`` start of a field (several text columns), ``xxrep n c`` a character repeated ``n`` times,
  ``xxwrep n w`` a word repeated ``n`` times, ``xxup`` the next word was in capitals, ``xxmaj`` the
  next word was capitalized (everything is lower-cased after marking).

>>> replace_maj("Hello there")
'xxmaj Hello there'
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ember.core.errors import ExportError, expected

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
]

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
TK_REP, TK_WREP, TK_UP, TK_MAJ = "xxrep", "xxwrep", "xxup", "xxmaj"
#: Every special token, in the order they take the first ids of a vocabulary (``xxunk`` is 0, ``xxpad`` 1).
SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ)

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
