"""`` (did you mean 'X'?)`` after a name that is almost one pipeplug knows."""

from __future__ import annotations

import typing as t


def did_you_mean(word: str, choices: t.Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` for the closest choice, or "" when none is close."""
    import difflib  # only when a name is wrong: a plugin starts without it

    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        close = [c for c in options if c.lower() == word.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""
