"""The converted-weight cache: reuse, atomic install, rebuild of a truncated / stale entry with the reason."""

from __future__ import annotations

import json
import logging
import time

import pytest

from deepseek_tt.weights.cache import MANIFEST_NAME, WeightCache
from deepseek_tt.weights.convert import RandomStateDict, load_or_convert_model_weights
from reference_models.presets import get_preset
from reference_models.random_weights import random_tensor
from reference_models.state_dict_keys import official_weight_specs

pytestmark = pytest.mark.unit

LOGGER = "deepseek_tt.weights.cache"


@pytest.fixture
def dense_config():
    """The tiny preset cut to its one dense layer: every module but the MoE, converted in about a second."""
    return get_preset("tiny", num_layers=1)


def _load(config, mesh, cache_dir, **kwargs):
    return load_or_convert_model_weights(config, mesh, cache_dir, random_seed=3, progress=False, **kwargs)


def test_second_run_loads_without_converting(dense_config, mesh, tmp_path, caplog, record_result):
    caplog.set_level(logging.INFO, logger=LOGGER)
    first = _load(dense_config, mesh, tmp_path)
    assert first.converted and first.entry_dir == tmp_path.resolve() / first.entry_dir.parent.name / "mesh_1x1"
    start = time.perf_counter()
    second = _load(dense_config, mesh, tmp_path)
    load_seconds = time.perf_counter() - start
    assert not second.converted and second.reason == "cache hit"
    assert second.weight_config == first.weight_config
    record_result(module="weight_cache", mode="load", metric="convert_s", value=first.seconds, higher_is_better=False, mesh="1x1")
    record_result(module="weight_cache", mode="load", metric="cached_load_s", value=load_seconds, higher_is_better=False, mesh="1x1")
    assert load_seconds < first.seconds
    assert not [p for p in first.entry_dir.parent.iterdir() if p.name.startswith(".tmp")], "a temporary entry was left behind"


def test_truncated_file_is_rebuilt_with_the_reason(dense_config, mesh, tmp_path, caplog):
    entry = _load(dense_config, mesh, tmp_path).entry_dir
    victim = sorted(entry.rglob("*.tensorbin"))[0]
    victim.write_bytes(victim.read_bytes()[:64])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = _load(dense_config, mesh, tmp_path)
    assert again.converted
    assert str(victim) in caplog.text and "truncated" in caplog.text
    assert victim.stat().st_size > 64


def test_corrupt_file_of_same_size_is_rebuilt(dense_config, mesh, tmp_path, caplog):
    entry = _load(dense_config, mesh, tmp_path).entry_dir
    victim = sorted(entry.rglob("*.tensorbin"))[-1]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _load(dense_config, mesh, tmp_path).converted
    assert "checksum" in caplog.text


def test_changed_config_rebuilds_and_says_what_changed(dense_config, mesh, tmp_path, caplog):
    first = _load(dense_config, mesh, tmp_path)
    dense_config.rms_norm_eps = 1e-5
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        second = _load(dense_config, mesh, tmp_path)
    assert second.converted and second.entry_dir != first.entry_dir
    assert "hf_config.rms_norm_eps" in caplog.text


def test_other_policy_seed_or_mesh_is_another_entry(dense_config, mesh, tmp_path):
    base = WeightCache(tmp_path, dense_config, "default", (1, 1), {"random": {"seed": 3}})
    assert WeightCache(tmp_path, dense_config, "high_precision", (1, 1), {"random": {"seed": 3}}).fingerprint != base.fingerprint
    assert WeightCache(tmp_path, dense_config, "default", (1, 1), {"random": {"seed": 4}}).fingerprint != base.fingerprint
    assert WeightCache(tmp_path, dense_config, "default", (4, 8), {"random": {"seed": 3}}).fingerprint != base.fingerprint


def test_recalculate_forces_conversion(dense_config, mesh, tmp_path, caplog):
    _load(dense_config, mesh, tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = _load(dense_config, mesh, tmp_path, recalculate=True)
    assert again.converted and "recalculate" in caplog.text


def test_interrupted_conversion_leaves_no_trusted_entry(dense_config, mesh, tmp_path):
    cache = WeightCache(tmp_path, dense_config, "default", (1, 1), {"random": {"seed": 3}})

    def crash(out_dir):
        (out_dir / "half.tensorbin").write_bytes(b"partial")
        raise KeyboardInterrupt("conversion interrupted")

    with pytest.raises(KeyboardInterrupt):
        cache.load_or_convert(crash)
    assert not cache.entry_dir.exists()
    assert not list(cache.entry_dir.parent.glob(".tmp*")), "the partial conversion was not cleaned up"
    valid, reason = cache.check()
    assert not valid and "no entry" in reason


def test_entry_without_manifest_is_not_trusted(dense_config, mesh, tmp_path, caplog):
    entry = _load(dense_config, mesh, tmp_path).entry_dir
    (entry / MANIFEST_NAME).unlink()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _load(dense_config, mesh, tmp_path).converted
    assert "missing" in caplog.text
    assert json.loads((entry / MANIFEST_NAME).read_text())["fingerprint"] == entry.parent.name


def test_random_state_dict_is_lazy_and_matches_the_reference_generator(dense_config):
    state = RandomStateDict(dense_config, seed=3)
    specs = official_weight_specs(dense_config)
    key = "model.layers.0.mlp.down_proj.weight"
    assert set(state) == set(specs)
    view = state.view("model.layers.0.mlp")
    assert "down_proj.weight" in view and len(view) == 3
    assert view["down_proj.weight"].equal(random_tensor(key, specs[key], 3))
