"""The .refpt reader (deepseek_tt.accuracy.refpt): v0, single-entry v1, and clear errors."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.accuracy.refpt import RefptError, load_refpt

pytestmark = pytest.mark.demo

TOKENS = torch.arange(10, 20).view(1, 10)
TOP5 = torch.stack([torch.arange(i, i + 5) for i in range(10, 20)])


def _save(path, data):
    torch.save(data, path)
    return path


def test_v0_with_top5(tmp_path):
    ref = load_refpt(_save(tmp_path / "a.refpt", {"reference_tokens": TOKENS, "top5_tokens": TOP5}), vocab_size=100)
    assert ref.version == 0 and ref.length == 10 and ref.tokens.tolist() == list(range(10, 20))
    assert ref.prompt_len() == 10 // 2 + 1 and ref.prompt_len(3) == 3
    assert torch.equal(ref.top5, TOP5)


def test_v0_without_top5(tmp_path):
    ref = load_refpt(_save(tmp_path / "a.pt", {"reference_tokens": TOKENS}))
    assert ref.top5 is None


def test_v1_single_entry_with_prompt_and_generated(tmp_path):
    entry = {"prompt_tokens": TOKENS[:, :4], "generated_tokens": TOKENS[0, 4:], "top5_tokens": TOP5, "tf_prompt_len": 4}
    ref = load_refpt(_save(tmp_path / "v1.refpt", {"entries": [entry], "metadata": {"model": "x"}}))
    assert ref.version == 1 and ref.tokens.tolist() == list(range(10, 20)) and ref.prompt_len() == 4
    top = load_refpt(_save(tmp_path / "v1top.refpt", {"reference_tokens": TOKENS, "tf_prompt_len": 3, "metadata": {}}))
    assert top.version == 1 and top.prompt_len() == 3


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2, 3], "expected a dict"),
        ({"tokens": TOKENS}, "missing 'reference_tokens'"),
        ({"entries": [{"reference_tokens": TOKENS}, {"reference_tokens": TOKENS}]}, "exactly one entry"),
        ({"reference_tokens": TOKENS.float()}, "integer token ids"),
        ({"reference_tokens": TOKENS.view(2, 5)}, r"shape \[1, T\]"),
        ({"reference_tokens": TOKENS, "top5_tokens": TOP5[:, :4]}, r"'top5_tokens' must have shape \[10, 5\]"),
        ({"reference_tokens": TOKENS[:, :1]}, "at least 2 tokens"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, data, message):
    path = _save(tmp_path / "bad.refpt", data)
    with pytest.raises(RefptError, match=message) as info:
        load_refpt(path)
    assert str(path) in str(info.value)


def test_token_ids_beyond_the_vocabulary(tmp_path):
    path = _save(tmp_path / "v.refpt", {"reference_tokens": TOKENS, "top5_tokens": TOP5})
    with pytest.raises(RefptError, match="token id 19, outside the model's vocabulary"):
        load_refpt(path, vocab_size=19)
    with pytest.raises(RefptError, match="'top5_tokens' holds token id 23"):
        load_refpt(path, vocab_size=20)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(RefptError, match="not found"):
        load_refpt(tmp_path / "nope.refpt")
    junk = tmp_path / "junk.refpt"
    junk.write_text("not a torch file")
    with pytest.raises(RefptError, match="not a readable torch.save file"):
        load_refpt(junk)


def test_prompt_length_out_of_range(tmp_path):
    ref = load_refpt(_save(tmp_path / "a.refpt", {"reference_tokens": TOKENS}))
    with pytest.raises(RefptError, match=r"prompt length 10 must be in \[1, 9\]"):
        ref.prompt_len(10)
