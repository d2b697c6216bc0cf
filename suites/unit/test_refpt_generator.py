"""The .refpt generator (v0): deterministic greedy references with the documented row convention."""

from __future__ import annotations

import pytest
import torch

from reference_models.embedded import embedded_model_path
from reference_models.refpt import REFERENCE_TOKENS, TOP5_TOKENS, main, prompt_length

pytestmark = pytest.mark.unit

PROMPT = "The return value of a function is the value of the expression in its return statement, and"


def _generate(tmp_path, name: str, total: int = 24) -> dict[str, torch.Tensor]:
    out = tmp_path / name
    assert main(["--model-path", str(embedded_model_path()), "--prompt", PROMPT, "--total-length", str(total),
                 "--output-file", str(out), "--threads", "1"]) == 0
    return torch.load(out, weights_only=True)


def test_generation_is_deterministic_and_v0_shaped(tmp_path):
    a, b = _generate(tmp_path, "a.refpt"), _generate(tmp_path, "b.refpt")
    assert torch.equal(a[REFERENCE_TOKENS], b[REFERENCE_TOKENS]) and torch.equal(a[TOP5_TOKENS], b[TOP5_TOKENS])
    tokens, top5 = a[REFERENCE_TOKENS], a[TOP5_TOKENS]
    assert tokens.shape == (1, 24) and top5.shape == (24, 5)
    assert int(tokens[0, 0]) == 0  # bos
    n = prompt_length(24)
    assert torch.equal(tokens[0, n:], top5[n:, 0])
    assert torch.equal(top5[0], tokens[0, :1].repeat(5))


def test_prompt_shorter_than_the_split_is_a_clear_error(tmp_path, capsys):
    assert main(["--model-path", str(embedded_model_path()), "--prompt", "The", "--total-length", "64",
                 "--output-file", str(tmp_path / "x.refpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --prompt: the prompt has") and "--total-length 64 needs at least 33" in err[0]
    assert not (tmp_path / "x.refpt").exists()


def test_missing_prompt_file_is_named(tmp_path, capsys):
    assert main(["--model-path", str(embedded_model_path()), "--prompt-file", str(tmp_path / "none.txt"),
                 "--total-length", "8", "--output-file", str(tmp_path / "x.refpt")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --prompt-file {tmp_path / 'none.txt'}: no such file")
