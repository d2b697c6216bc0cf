"""The training script of the embedded model: it learns, resumes exactly, and balances the experts."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import DeepseekV3ForCausalLM

from reference_models.train import LoadBalancer, TrainInputError, lr_at, model_config, parse_args, sample_batch, train, unigram_cross_entropy

pytestmark = pytest.mark.unit

MICRO = ["--size", "micro", "--batch-size", "4", "--seq-len", "32", "--max-docs", "60", "--lr", "3e-3",
         "--warmup", "2", "--log-every", "4", "--eval-every", "4", "--threads", "1", "--seed", "3"]


def test_training_from_scratch_lowers_the_loss(tmp_path):
    metrics = train(parse_args(["--out", str(tmp_path), "--steps", "16", "--checkpoint-every", "8", *MICRO]))
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.3
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert math.isclose(metrics["val_perplexity"], math.exp(metrics["val_loss"]))
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "metrics.json").is_file()
    reloaded = DeepseekV3ForCausalLM.from_pretrained(str(tmp_path / "hf"))
    assert reloaded.config.n_group == 4 and reloaded.config.first_k_dense_replace == 1


def test_resume_continues_exactly(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    common = ["--steps", "6", "--checkpoint-every", "100", *MICRO]
    train(parse_args(["--out", str(straight), *common]))
    assert "stopped_at" in train(parse_args(["--out", str(interrupted), "--stop-after", "3", *common]))
    train(parse_args(["--out", str(interrupted), "--resume", *common]))
    a = torch.load(straight / "train_state.pt", weights_only=False)["model"]
    b = torch.load(interrupted / "train_state.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(TrainInputError, match="--resume: no checkpoint"):
        train(parse_args(["--out", str(tmp_path), "--steps", "2", "--resume", *MICRO]))


def test_balancing_bias_moves_toward_balance():
    torch.manual_seed(0)
    config = model_config("micro")
    model = DeepseekV3ForCausalLM(config).train()
    router = next(m for m in model.modules() if type(m).__name__ == "DeepseekV3TopkRouter")
    assert "e_score_correction_bias" not in dict(model.named_parameters()).get(router, {})
    assert all(not name.endswith("e_score_correction_bias") for name, _ in model.named_parameters())
    # Skew the router so that experts 0..1 win every token.
    with torch.no_grad():
        router.weight.normal_(0.0, 0.2)
        router.e_score_correction_bias[:2] = 1.0
    balancer = LoadBalancer(model, speed=0.02)
    x = torch.randint(0, config.vocab_size, (4, 32))
    ratios = []
    for _ in range(40):
        model(input_ids=x)
        before = router.e_score_correction_bias.clone()
        load = balancer.loads[0].clone()
        ratios.append(balancer.update())
        moved = router.e_score_correction_bias - before
        assert torch.all(moved[load > load.mean()] < 0) and torch.all(moved[load < load.mean()] > 0)
    assert ratios[0] == pytest.approx(config.n_routed_experts / config.num_experts_per_tok)
    assert sum(ratios[-5:]) / 5 < 0.6 * ratios[0]


def test_bias_is_used_for_selection_only():
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(model_config("micro")).eval()
    router = next(m for m in model.modules() if type(m).__name__ == "DeepseekV3TopkRouter")
    h = torch.randn(5, model.config.hidden_size)
    _, weights, idx = router(h)
    with torch.no_grad():
        router.e_score_correction_bias.fill_(0.3)  # same shift for every expert: same selection
    _, weights2, idx2 = router(h)
    assert torch.equal(idx.sort(-1).values, idx2.sort(-1).values)
    torch.testing.assert_close(weights.gather(1, idx.argsort(-1)), weights2.gather(1, idx2.argsort(-1)))


def test_batches_are_deterministic_and_lr_schedule_shape():
    stream = torch.arange(1000)
    assert torch.equal(sample_batch(stream, 3, 8, seed=1, step=5), sample_batch(stream, 3, 8, seed=1, step=5))
    assert not torch.equal(sample_batch(stream, 3, 8, seed=1, step=5), sample_batch(stream, 3, 8, seed=1, step=6))
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)


def test_unigram_baseline_is_the_entropy_of_the_counts():
    train_stream = torch.tensor([0, 0, 1, 1])
    # add-one smoothing over a vocabulary of 2: p = 3/6 each -> ln 2 per token.
    assert unigram_cross_entropy(train_stream, torch.tensor([0, 1, 0]), 2) == pytest.approx(math.log(2))


def test_tiny_en_shapes_shard_across_a_4x8_mesh():
    c = model_config("tiny-en")
    assert c.hidden_size % (8 * 32) == 0 and c.vocab_size % (8 * 32) == 0
    assert c.intermediate_size % (8 * 32) == 0 and c.moe_intermediate_size * c.n_shared_experts % (8 * 32) == 0
    assert c.num_attention_heads % 8 == 0 and c.n_routed_experts % 32 == 0
    assert 0 < c.first_k_dense_replace < c.num_hidden_layers and c.q_lora_rank and c.n_group > 1
    assert c.rope_parameters["rope_type"] == "yarn"
