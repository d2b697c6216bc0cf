"""Incremental detokenization with stop strings (OpenAI semantics: the stop string is not returned)."""

from __future__ import annotations

from typing import Any


class Detokenizer:
    """Decode the tokens so far and keep ``text``: the part that is final. Held back: an incomplete UTF-8
    character and a tail that could still become a stop string. ``stopped`` once a stop string appeared
    (``text`` then ends right before it)."""

    def __init__(self, tokenizer: Any, stops: list[str]) -> None:
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.tokens: list[int] = []
        self.text = ""
        self.stopped = False
        self._hold = max((len(s) - 1 for s in self.stops), default=0)

    def add(self, token: int) -> str:
        """Add a token; returns the text that became final."""
        if self.stopped:
            return ""
        self.tokens.append(token)
        full = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        for stop in self.stops:
            # a stop string can only start in the part not yet final or overlapping its end
            cut = full.find(stop, max(0, len(self.text) - len(stop) + 1))
            if cut != -1:
                self.stopped = True
                return self._take(full[:cut])
        if full.endswith("\ufffd"):
            return ""
        return self._take(full[: len(full) - self._hold] if self._hold else full)

    def flush(self) -> str:
        """At the end of generation: everything not yet final (unless a stop string ended it)."""
        if self.stopped:
            return ""
        return self._take(self.tokenizer.decode(self.tokens, skip_special_tokens=True))

    def _take(self, text: str) -> str:
        if len(text) <= len(self.text):
            return ""
        delta = text[len(self.text):]
        self.text = text
        return delta
