"""The .refpt generator's v0 / v1 output through the reader, hand-written v0 files, chat prompts, ``inspect``.

A random-weight ``micro`` checkpoint (vocab 384) stands in for a model: only the file layouts matter here.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from deepseek_tt.accuracy.refpt import RefptError, load_refpt
from reference_models.checkpoint import write_checkpoint
from reference_models.refpt import REFERENCE_TOKENS, TOP5_TOKENS, inspect_reference, main
from reference_models.train import model_config

pytestmark = pytest.mark.unit

PROMPT = "A list is a sequence of values that can be changed in place and indexed by position."
#: A minimal chat template in the DeepSeek-V3 style (bos, "<｜User｜>" text, "<｜Assistant｜>").
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(model_config("micro"), tmp_path_factory.mktemp("refpt") / "micro", seed=1)


def _generate(model_dir: Path, out: Path, *extra: str, total: int = 24) -> dict:
    argv = ["--model-path", str(model_dir), "--prompt", PROMPT, "--total-length", str(total), "--output-file", str(out), "--threads", "1"]
    assert main([*argv, *extra]) == 0
    return torch.load(out, weights_only=True)


def test_v0_output_round_trips_through_the_reader(micro, tmp_path):
    raw = _generate(micro, tmp_path / "a.refpt")
    assert set(raw) == {REFERENCE_TOKENS, TOP5_TOKENS}
    ref = load_refpt(tmp_path / "a.refpt", vocab_size=384)
    assert ref.version == 0 and ref.length == 24 and ref.prompt_len() == 13
    assert torch.equal(ref.tokens, raw[REFERENCE_TOKENS][0]) and torch.equal(ref.top5, raw[TOP5_TOKENS])
    # greedy: every continuation token is the reference top-1 of its row
    assert torch.equal(ref.tokens[13:], ref.top5[13:, 0])


def test_v1_output_round_trips_through_the_reader(micro, tmp_path):
    raw = _generate(micro, tmp_path / "b.refpt", "--format", "v1", "--prompt-len", "10")
    v0 = _generate(micro, tmp_path / "b0.refpt")
    ref = load_refpt(tmp_path / "b.refpt", vocab_size=384)
    assert ref.version == 1 and ref.length == 24 and ref.prompt_len() == 10 == raw["tf_prompt_len"]
    assert torch.equal(raw["prompt_tokens"][0], ref.tokens[:10]) and torch.equal(raw["generated_tokens"][0], ref.tokens[10:])
    assert torch.equal(raw[REFERENCE_TOKENS][0, :10], v0[REFERENCE_TOKENS][0, :10])
    assert ref.metadata["vocab_size"] == 384 and ref.metadata["total_length"] == 24 and ref.metadata["prompt_source"] == "text"
    # the same file without reference_tokens (prompt + generated only) reads the same
    slim = {k: v for k, v in raw.items() if k != REFERENCE_TOKENS}
    torch.save(slim, tmp_path / "slim.refpt")
    assert torch.equal(load_refpt(tmp_path / "slim.refpt").tokens, ref.tokens)


def test_generation_is_deterministic(micro, tmp_path):
    a = _generate(micro, tmp_path / "a.refpt", "--format", "v1")
    b = _generate(micro, tmp_path / "b.refpt", "--format", "v1")
    assert all(torch.equal(a[k], b[k]) for k in (REFERENCE_TOKENS, TOP5_TOKENS)) and a["metadata"] == b["metadata"]


def test_hand_written_v0_in_the_seed_format(tmp_path):
    tokens = torch.arange(100, 111, dtype=torch.long)[None]  # [1, 11]
    top5 = torch.stack([tokens[0] + k for k in range(5)], dim=1)  # [11, 5], row i's top-1 is token i
    torch.save({"reference_tokens": tokens, "top5_tokens": top5}, tmp_path / "seed.refpt")
    torch.save({"reference_tokens": tokens}, tmp_path / "seed_top1.pt")
    ref = load_refpt(tmp_path / "seed.refpt", vocab_size=200)
    assert ref.version == 0 and ref.prompt_len() == 11 // 2 + 1 == 6 and ref.prompt_len(3) == 3
    assert ref.tokens.tolist() == list(range(100, 111)) and ref.top5[7].tolist() == [107, 108, 109, 110, 111]
    assert load_refpt(tmp_path / "seed_top1.pt").top5 is None
    with pytest.raises(RefptError, match=r"seed.refpt: 'top5_tokens' holds token id 114"):
        load_refpt(tmp_path / "seed.refpt", vocab_size=111)


def test_multi_entry_v1_needs_an_index(tmp_path):
    entries = [{"reference_tokens": torch.arange(i, i + 8)[None], "tf_prompt_len": 3} for i in (0, 10)]
    torch.save({"entries": entries, "metadata": {"set": "x"}}, tmp_path / "multi.refpt")
    with pytest.raises(RefptError, match=r"multi.refpt: 'entries' holds 2 references; expected exactly one entry unless an entry index \(0..1\)"):
        load_refpt(tmp_path / "multi.refpt")
    second = load_refpt(tmp_path / "multi.refpt", entry_index=1)
    assert second.tokens.tolist() == list(range(10, 18)) and second.prompt_len() == 3 and second.metadata == {"set": "x"}
    with pytest.raises(RefptError, match="entry index 2 out of range for 2 entries"):
        load_refpt(tmp_path / "multi.refpt", entry_index=2)


def _with_chat_template(model_dir: Path, out: Path, template: str | None) -> Path:
    """A copy of ``model_dir`` whose tokenizer has ``template`` as its chat template (None: none at all)."""
    shutil.copytree(model_dir, out)
    config_file = out / "tokenizer_config.json"
    config = {k: v for k, v in json.loads(config_file.read_text()).items() if k != "chat_template"}
    config_file.write_text(json.dumps(config if template is None else {**config, "chat_template": template}))
    return out


def test_chat_template_prompt(micro, tmp_path, capsys):
    plain = _with_chat_template(micro, tmp_path / "plain_model", None)
    argv = ["--model-path", str(plain), "--prompt", PROMPT, "--total-length", "24", "--output-file", str(tmp_path / "x.refpt")]
    assert main([*argv, "--chat-template"]) == 2
    assert capsys.readouterr().err.startswith("error: --prompt: the tokenizer has no chat_template")
    chat = _with_chat_template(micro, tmp_path / "chat_model", CHAT_TEMPLATE)
    raw = _generate(chat, tmp_path / "chat.refpt", "--chat-template", "--format", "v1", total=64)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chat), local_files_only=True)
    prompt = tok.decode(raw["prompt_tokens"][0].tolist())
    assert raw["metadata"]["prompt_source"] == "chat_template"
    assert prompt.startswith(tok.bos_token + "User: A list is"), prompt


def test_prompt_file_and_bad_flags(micro, tmp_path):
    text = tmp_path / "prompt.txt"
    text.write_text(PROMPT, encoding="utf-8")
    from_file = _generate(micro, tmp_path / "f.refpt").get(REFERENCE_TOKENS)
    assert main(["--model-path", str(micro), "--prompt-file", str(text), "--total-length", "24", "--output-file", str(tmp_path / "g.refpt")]) == 0
    assert torch.equal(torch.load(tmp_path / "g.refpt", weights_only=True)[REFERENCE_TOKENS], from_file)
    with pytest.raises(SystemExit):
        main(["--model-path", str(micro), "--prompt", "x", "--total-length", "24", "--prompt-len", "5", "--output-file", str(tmp_path / "h.refpt")])
    (tmp_path / "empty.txt").write_text("  \n")
    assert main(["--model-path", str(micro), "--prompt-file", str(tmp_path / "empty.txt"), "--total-length", "24", "--output-file", str(tmp_path / "h.refpt")]) == 2


def test_inspect_prints_shape_split_prompt_and_continuation(micro, tmp_path, capsys):
    raw = _generate(micro, tmp_path / "i.refpt", "--format", "v1", "--prompt-len", "10")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(micro), local_files_only=True)
    assert main(["inspect", str(tmp_path / "i.refpt"), "--model-path", str(micro)]) == 0
    out = capsys.readouterr().out
    assert "format: v1" in out and "reference_tokens: [1, 24]" in out and "top5_tokens: [24, 5]" in out
    assert "split: prompt 10 tokens + continuation 14 tokens (tf_prompt_len)" in out
    assert f"prompt: {tok.decode(raw['prompt_tokens'][0].tolist())!r}" in out
    assert f"continuation: {tok.decode(raw['generated_tokens'][0].tolist())!r}" in out
    plain = inspect_reference(tmp_path / "i.refpt", tf_prompt_len=12)
    assert "split: prompt 12 tokens + continuation 12 tokens (--tf-prompt-len)" in plain
    assert f"prompt ids: {raw['reference_tokens'][0, :12].tolist()}" in plain
    torch.save({"tokens": [1, 2]}, tmp_path / "bad.refpt")
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "bad.refpt")]) == 2
    assert re.match(r"error: inspect: .*bad.refpt: missing 'reference_tokens'", capsys.readouterr().err)
