"""The committed trained model: official format, small, offline, confident, better than unigram."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from deepseek_tt.accuracy.thresholds import teacher_forcing_threshold
from reference_models.embedded import EMBEDDED_PROMPT_NAME, embedded_model_path, embedded_refpt_path
from reference_models.reference import load_reference_model
from reference_models.refpt import REFERENCE_TOKENS, TOP5_TOKENS, prompt_length, teacher_forced_accuracy

pytestmark = pytest.mark.unit

MAX_WEIGHT_BYTES = 25 * 1024**2


@pytest.fixture(scope="module")
def model_dir():
    return embedded_model_path()


@pytest.fixture(scope="module")
def reference(model_dir):
    return torch.load(embedded_refpt_path(), weights_only=True)


@pytest.fixture(scope="module")
def fp32_model(model_dir):
    return load_reference_model(model_dir, torch.float32)


def test_directory_is_in_the_official_fp8_format(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["quantization_config"]["fmt"] == "e4m3"
    assert config["quantization_config"]["weight_block_size"] == [128, 128]
    assert config["rope_scaling"]["type"] == "yarn" and config["q_lora_rank"]
    assert 0 < config["first_k_dense_replace"] < config["num_hidden_layers"]
    assert config["n_group"] > 1 and config["n_shared_experts"] >= 1 and config["topk_method"] == "noaux_tc"
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    assert any(k.endswith("weight_scale_inv") for k in index["weight_map"])
    assert any(k.endswith("e_score_correction_bias") for k in index["weight_map"])
    assert sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) <= MAX_WEIGHT_BYTES


def test_trained_balancing_bias_is_not_zero(fp32_model):
    biases = [m.e_score_correction_bias for m in fp32_model.modules() if hasattr(m, "e_score_correction_bias")]
    assert biases and all(b.abs().max() > 0 for b in biases)


def test_refpt_is_v0_and_greedy_from_held_out_text(model_dir, reference):
    tokens, top5 = reference[REFERENCE_TOKENS], reference[TOP5_TOKENS]
    total = tokens.shape[1]
    assert tokens.dtype == top5.dtype == torch.long and tokens.shape[0] == 1 and top5.shape == (total, 5)
    n_prompt = prompt_length(total)
    assert total - n_prompt >= 128
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    assert int(tokens.max()) < vocab and int(top5.max()) < vocab
    assert torch.equal(tokens[0, n_prompt:], top5[n_prompt:, 0])  # greedy continuation
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    prompt_text = tokenizer.decode(tokens[0, 1:n_prompt].tolist())
    assert (model_dir / EMBEDDED_PROMPT_NAME).read_text(encoding="utf-8").startswith(prompt_text)


def test_fp32_reload_reproduces_the_refpt(fp32_model, reference):
    top1, top5 = teacher_forced_accuracy(fp32_model, reference)
    assert top1 >= 0.99 and top5 == 1.0


def test_bf16_agrees_with_fp32_under_teacher_forcing(model_dir, reference):
    bf16 = load_reference_model(model_dir, torch.bfloat16)
    top1, top5 = teacher_forced_accuracy(bf16, reference)
    assert top1 >= teacher_forcing_threshold("high_precision", "top1"), f"bf16 vs fp32 top-1 {top1:.3f}"
    assert top5 >= teacher_forcing_threshold("strict", "top5"), f"bf16 vs fp32 top-5 {top5:.3f}"


def test_validation_loss_beats_the_unigram_baseline(model_dir, fp32_model):
    from reference_models.corpus import load_documents, split_documents
    from reference_models.train import _stream, evaluate, unigram_cross_entropy

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    train_docs, val_docs = split_documents(load_documents())
    train = _stream(tokenizer, [d.text for d in train_docs], 0, 1)
    val = _stream(tokenizer, [d.text for d in val_docs], 0, 1)[: 8 * 256 + 1]
    unigram = unigram_cross_entropy(train, val, fp32_model.config.vocab_size)
    model_loss = evaluate(fp32_model, val, 256)
    assert model_loss < unigram - 1.0, (model_loss, unigram)
