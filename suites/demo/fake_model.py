"""A small deterministic model behind the runtime facade, for fast generator checks.

Logits depend only on a user's own token history (seeded from it), so any schedule of prefill/decode
calls gives the same tokens when the generator is right. It checks the facade rules as it goes:
positions continue each user's history, slots at position -1 are left alone.
"""

from __future__ import annotations

import zlib

import torch

EOS = 1


class FakeModel:
    def __init__(self, vocab_size: int = 64, max_batch_size: int = 4, max_seq_len: int = 128, eos_after: dict[int, int] | None = None):
        self.vocab_size = vocab_size
        self.max_batch_size = max_batch_size
        self.max_seq_len = max_seq_len
        self.hf_config = type("Cfg", (), {"eos_token_id": EOS})()
        self.eos_after = eos_after or {}  # first prompt token -> emit eos as the n-th new token
        self.histories: dict[int, list[int]] = {}
        self.prompt_lens: dict[int, int] = {}
        self.decode_calls = 0
        self.prefill_calls = 0

    def reset(self) -> None:
        self.histories.clear()
        self.prompt_lens.clear()

    def _logits(self, history: list[int], prompt_len: int) -> torch.Tensor:
        seed = zlib.crc32(bytes(str(history), "ascii"))
        logits = torch.randn(self.vocab_size, generator=torch.Generator().manual_seed(seed)) * 3
        logits[EOS] = -1e9
        eos_at = self.eos_after.get(history[0])
        if eos_at is not None and len(history) - prompt_len + 1 >= eos_at:
            logits[EOS] = 1e9
        return logits

    def prefill(self, tokens: torch.Tensor, user_id: int) -> torch.Tensor:
        self.prefill_calls += 1
        ids = [int(t) for t in tokens]
        self.histories[user_id] = list(ids)
        self.prompt_lens[user_id] = len(ids)
        return torch.stack([self._logits(ids[: i + 1], len(ids)) for i in range(len(ids))])

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        assert tokens.shape == positions.shape == (self.max_batch_size,)
        self.decode_calls += 1
        out = torch.zeros(self.max_batch_size, self.vocab_size)
        for slot in range(self.max_batch_size):
            pos = int(positions[slot])
            if pos < 0:
                continue
            history = self.histories[slot]
            assert pos == len(history), f"slot {slot}: position {pos} but history has {len(history)} tokens"
            history.append(int(tokens[slot]))
            out[slot] = self._logits(history, self.prompt_lens[slot])
        return out


class _HookTrace:
    def __init__(self, model: "TraceableFakeModel") -> None:
        self.model = model
        self.replays = 0
        self.released = False

    def replay(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        self.replays += 1
        return self.model.decode(tokens, positions)

    def release(self) -> None:
        self.released = True


class TraceableFakeModel(FakeModel):
    """FakeModel with the ``capture_decode_trace`` hook (capture records nothing, replay decodes)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.traces: list[_HookTrace] = []

    def capture_decode_trace(self, tokens: torch.Tensor, positions: torch.Tensor) -> _HookTrace:
        trace = _HookTrace(self)
        self.traces.append(trace)
        return trace
