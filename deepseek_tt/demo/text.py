"""Turning prompts into token ids and tokens back into text, with or without a real tokenizer."""

from __future__ import annotations

import sys
from typing import Any, Protocol, TextIO

BYTE_OFFSET = 2  # keep synthetic ids clear of bos (0) and eos (1)


class TextCodec(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class TokenizerCodec:
    """A Hugging Face tokenizer (prompts get the tokenizer's bos)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class ByteCodec:
    """Synthetic ids for ``--random-weights`` without a usable tokenizer: UTF-8 bytes + 2."""

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 256 + BYTE_OFFSET:
            raise ValueError(f"synthetic byte tokens need vocab_size >= {256 + BYTE_OFFSET}, got {vocab_size}")

    def encode(self, text: str) -> list[int]:
        return [b + BYTE_OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        data = bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < 256 + BYTE_OFFSET)
        return data.decode("utf-8", errors="replace")


class FirstUserStreamer:
    """Prints the first prompt's text as its tokens arrive (``--early_print_first_user``)."""

    def __init__(self, codec: TextCodec, stream: TextIO | None = None) -> None:
        self.codec = codec
        self.stream = stream or sys.stdout
        self.tokens: list[int] = []
        self.printed = ""

    def __call__(self, index: int, token: int) -> None:
        if index != 0:
            return
        self.tokens.append(token)
        text = self.codec.decode(self.tokens)
        if text.startswith(self.printed):
            delta = text[len(self.printed) :]
        else:  # a later token changed how earlier bytes decode; print the rest
            delta = text[len(self.printed) :] if len(text) > len(self.printed) else ""
        if delta:
            self.stream.write(delta)
            self.stream.flush()
            self.printed = text

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


__all__ = ["ByteCodec", "FirstUserStreamer", "TextCodec", "TokenizerCodec"]
