"""The one token-id check of the runtime facades and the generators (one rule, one message)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_token_ids(tokens: torch.Tensor | Sequence[int], vocab_size: int, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` and the first id outside ``[0, vocab_size)``."""
    ids = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
    bad = (ids < 0) | (ids >= int(vocab_size))
    if bool(bad.any()):
        first = int(ids[bad.nonzero()[0, 0]])
        raise ValueError(f"{where}: token id {first} outside the vocabulary [0, vocab_size={int(vocab_size)})")


__all__ = ["check_token_ids"]
