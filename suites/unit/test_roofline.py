"""The roofline estimator against the published decode bounds of docs/HARDWARE.md section 6, and its internal consistency."""

from __future__ import annotations

import pytest

from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.perf.roofline import estimate, expected_distinct_experts, summary
from reference_models.presets import get_preset

pytestmark = pytest.mark.unit

#: docs/HARDWARE.md section 6: one Wormhole Galaxy, weights only, all weights sharded over every chip.
BFP8_EVERYWHERE = DtypePolicy(name="bfp8", expert_gate_up="bfloat8_b", router="bfloat8_b", embedding="bfloat8_b")
BFP4_EXPERTS = DtypePolicy(
    name="bfp4-experts", expert_gate_up="bfloat4_b", expert_down="bfloat4_b", router="bfloat8_b", embedding="bfloat8_b"
)


@pytest.fixture(scope="module")
def full_config():
    return get_preset("full")


@pytest.mark.parametrize(
    ("policy", "users", "published"),
    [(BFP8_EVERYWHERE, 1, 237.0), (BFP4_EXPERTS, 1, 343.0), (BFP8_EVERYWHERE, 32, 20.0), (BFP4_EXPERTS, 32, 37.0)],
    ids=["bfp8-batch1", "bfp4experts-batch1", "bfp8-batch32", "bfp4experts-batch32"],
)
def test_galaxy_decode_bound_matches_published_figure(full_config, policy, users, published):
    roof = estimate(full_config, "TG", policy, "decode", users=users)
    assert roof.weights_only_tokens_per_s_per_user == pytest.approx(published, rel=0.15)


def test_distinct_experts_at_batch_32():
    assert expected_distinct_experts(256, 8, 32) == pytest.approx(163, abs=1)
    assert expected_distinct_experts(256, 8, 1) == pytest.approx(8)


def test_model_bound_is_never_faster_than_weights_only(full_config):
    for users in (1, 32, 128):
        roof = estimate(full_config, "TG", "default", "decode", users=users)
        assert roof.step_time_s >= roof.weights_only_step_time_s


def test_bounds_order_sensibly(full_config):
    tg = estimate(full_config, "TG", "default", users=1).tokens_per_s_per_user
    quad = estimate(full_config, "QUAD", "default", users=1).tokens_per_s_per_user
    n150 = estimate(full_config, "N150", "default", users=1).tokens_per_s_per_user
    assert n150 < tg < quad
    bf16 = estimate(full_config, "TG", "high_precision", users=1).weights_only_tokens_per_s_per_user
    assert bf16 < estimate(full_config, "TG", "default", users=1).weights_only_tokens_per_s_per_user
    long_context = estimate(full_config, "TG", "default", users=128, context=16384).step_time_s
    assert long_context > estimate(full_config, "TG", "default", users=128, context=1024).step_time_s


def test_prefill_is_compute_heavier_than_decode(full_config):
    prefill = estimate(full_config, "TG", "default", "prefill", prefill_len=4096)
    assert prefill.table["flops"].sum() > 1000 * estimate(full_config, "TG", "default", users=1).table["flops"].sum()


def test_summary_covers_every_system_at_batch_1_and_32_per_row(full_config):
    table = summary(full_config)
    assert set(table["system"].str.split().str[0]) == {"N150", "T3K", "TG", "DUAL", "QUAD"}
    tg = table[table["system"].str.startswith("TG")]
    assert sorted(tg["users"]) == [1, 128]


def test_unknown_mode_is_rejected(full_config):
    with pytest.raises(ValueError, match="mode"):
        estimate(full_config, mode="train")


def test_memory_summary_agrees_with_the_demo_check(full_config):
    """The CLI's memory table and the demo's refusal are one computation: a Galaxy cannot hold DeepSeek-V3 at
    the default policy (bp or pp), two can."""
    from deepseek_tt.runtime.mesh_fit import describe_memory_misfit
    from deepseek_tt.perf.hardware import DRAM_BYTES_PER_CHIP, SYSTEMS
    from deepseek_tt.perf.roofline import memory_summary

    table = memory_summary(full_config, "default", 4096)
    by_name = {system.name: system.mesh for system in SYSTEMS.values()}
    for _, row in table.iterrows():
        refused = describe_memory_misfit(full_config, "default", by_name[row["system"]], row["generator"], 4096,
                                         DRAM_BYTES_PER_CHIP["WORMHOLE_B0"])
        assert bool(row["fits"]) == (refused is None), (row["system"], row["generator"])
    fits = {(r["system"], r["generator"]): bool(r["fits"]) for _, r in table.iterrows()}
    assert not fits[("TG (1 Galaxy)", "bp")] and not fits[("TG (1 Galaxy)", "pp")]
    assert fits[("DUAL (2 Galaxies)", "bp")] and fits[("DUAL (2 Galaxies)", "pp")]
