"""`Vocab`: the mapping between tokens and integer ids, built from token counts.

Special tokens come first (``xxunk`` is id 0, ``xxpad`` id 1, ...), then the words seen at least
`min_freq` times, most frequent first (ties in first-seen order), at most `max_vocab` in all; the size is
padded up to a multiple of 8 with ``xxfake`` entries so embedding matrices suit tensor cores.

>>> v = Vocab.from_tokens([["xxbos", "a", "b", "a"]], min_freq=1)
>>> v.numericalize(["a", "zzz"]).tolist()
[9, 0]
>>> v.textify([9, 10])
'a b'
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.text.tokenize import PAD, SPECIAL_TOKENS, UNK

__all__ = ["Vocab"]

_FAKE = "xxfake"


@register_recipe()
class Vocab:
    """Tokens <-> ids.

    Args:
        itos: the tokens, in id order. Unknown tokens map to the id of ``xxunk`` (0 in a built vocabulary).
    """

    def __init__(self, itos: Sequence[str]) -> None:
        itos = list(itos)
        if not itos or not all(isinstance(t, str) for t in itos):
            raise ConfigError(expected("a non-empty list of str", "itos", itos[:5]))
        self.itos = itos
        # setdefault keeps the first id of a repeated token (the xxfake fillers are the only repeats).
        self.stoi: dict[str, int] = {}
        for i, t in enumerate(itos):
            self.stoi.setdefault(t, i)
        self.unk_idx = self.stoi.get(UNK, 0)
        self.pad_idx = self.stoi.get(PAD, 1)

    @classmethod
    def from_counter(
        cls,
        counts: Counter,
        min_freq: int = 3,
        max_vocab: int = 60000,
        special_toks: Sequence[str] = SPECIAL_TOKENS,
    ) -> Vocab:
        """Build from token counts (see the module docstring for the order)."""
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ConfigError(expected("an int >= 1", "min_freq", min_freq))
        if not isinstance(max_vocab, int) or max_vocab < len(special_toks):
            raise ConfigError(expected(f"an int >= {len(special_toks)} (the special tokens)", "max_vocab", max_vocab))
        specials = list(dict.fromkeys(special_toks))
        taken = set(specials)
        # most_common sorts by count, stable for ties (insertion order), so the result is deterministic.
        words = [w for w, c in counts.most_common() if c >= min_freq and w not in taken]
        itos = specials + words[: max_vocab - len(specials)]
        itos += [_FAKE] * (-len(itos) % 8)
        return cls(itos)

    @classmethod
    def from_tokens(
        cls,
        tokens: Iterable[Sequence[str]],
        min_freq: int = 3,
        max_vocab: int = 60000,
        special_toks: Sequence[str] = SPECIAL_TOKENS,
    ) -> Vocab:
        """Count the tokens of many texts and build from the counts."""
        counts: Counter = Counter()
        for toks in tokens:
            counts.update(toks)
        return cls.from_counter(counts, min_freq=min_freq, max_vocab=max_vocab, special_toks=special_toks)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        head = " ".join(self.itos[:12])
        return f"Vocab({len(self)} tokens: {head} ...)"

    def numericalize(self, tokens: Sequence[str]) -> torch.Tensor:
        """Token ids of one text as an int64 tensor; unknown tokens get the ``xxunk`` id."""
        get, unk = self.stoi.get, self.unk_idx
        return torch.tensor([get(t, unk) for t in tokens], dtype=torch.long)

    def numericalize_flat(self, tokens: Iterable[Sequence[str]]) -> np.ndarray:
        """Ids of many texts, one after another, as an int32 array (the flat layout of a corpus)."""
        get, unk = self.stoi.get, self.unk_idx
        return np.fromiter((get(t, unk) for toks in tokens for t in toks), dtype=np.int32)

    def textify(self, ids: Iterable[int] | torch.Tensor | np.ndarray, sep: str = " ") -> str:
        """Ids -> tokens joined by `sep`."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.reshape(-1).tolist()
        n = len(self.itos)
        out = []
        for i in ids:
            if not 0 <= i < n:
                raise DataError(expected(f"token ids in [0, {n})", "ids", i))
            out.append(self.itos[i])
        return sep.join(out)

    # --- export ------------------------------------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        return {"itos": list(self.itos)}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Vocab:
        return cls(data["itos"])

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the tokens to a JSON file."""
        path = Path(path)
        path.write_text(json.dumps(self.to_recipe(), ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Vocab:
        """Read what :meth:`to_json` wrote."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"Cannot read a vocabulary from {path}: {e}") from e
        return cls.from_recipe(data)
