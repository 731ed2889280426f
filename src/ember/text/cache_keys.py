"""Cache keys of tokenized text: digests of the inputs and of what identifies a tokenizer's output.

A rule or word-tokenizer function is identified by its qualified name and a digest of its code (ember's rules by
their name and a digest of their code and patterns), so that editing a function changes the key of the tokens it
made; a function whose output cannot be identified (a lambda, a closure) gets ``None`` and is never cached.
"""

from __future__ import annotations

import hashlib
import json
import types
from functools import lru_cache
from typing import Any

from ember.text.rules import _HTML_FIXES, _RE_HTML, _RE_REP, _RE_SPACES, _RE_SPEC, RULES, _patterns


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
