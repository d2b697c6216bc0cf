"""The converted-weight cache: reuse, atomic install, rebuild of a truncated / stale entry with the reason."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from deepseek_tt.weights import cache as cache_module
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


# --- hardening: malformed manifests, leftovers, source identity, unusable cache directories ---

MALFORMED_MANIFESTS = {
    "empty list": "[]",
    "null": "null",
    "garbage": "\x00\xffnot json{",
    "truncated JSON": '{"manifest_version": 2, "inputs": {',
    "a string": '"manifest"',
    "inputs of the wrong type": None,  # filled from the real manifest below
    "files of the wrong type": None,
    "file size a string": None,
    "weight config of the wrong type": None,
    "older manifest version": None,
}


def _malformed(name: str, real: dict) -> str:
    if MALFORMED_MANIFESTS[name] is not None:
        return MALFORMED_MANIFESTS[name]
    bad = json.loads(json.dumps(real))
    if name == "inputs of the wrong type":
        bad["inputs"] = [1, 2]
    elif name == "files of the wrong type":
        bad["files"] = "all of them"
    elif name == "file size a string":
        first = sorted(bad["files"])[0]
        bad["files"][first]["size"] = "12"
    elif name == "weight config of the wrong type":
        bad["weight_config"] = {"__list__": 5}
    elif name == "older manifest version":
        del bad["manifest_version"]
    return json.dumps(bad)


@pytest.mark.parametrize("name", sorted(MALFORMED_MANIFESTS))
def test_malformed_manifest_is_rebuilt_with_a_warning(dense_config, mesh, tmp_path, caplog, name):
    first = _load(dense_config, mesh, tmp_path)
    manifest = first.entry_dir / MANIFEST_NAME
    manifest.write_text(_malformed(name, json.loads(manifest.read_text())))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = _load(dense_config, mesh, tmp_path)
    assert again.converted and str(manifest) in caplog.text
    assert again.weight_config == first.weight_config
    assert _load(dense_config, mesh, tmp_path).reason == "cache hit"  # the rebuilt manifest is good


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftover_temporaries_of_dead_conversions_are_removed(dense_config, mesh, tmp_path, caplog):
    entry = _load(dense_config, mesh, tmp_path).entry_dir
    parent = entry.parent
    dead = _dead_pid()
    host = cache_module._host_tag()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    names = {
        "dead": f".tmp-mesh_1x1-h{host}-p{dead}-0123abcd",
        "dead, old name format": f".tmp-mesh_1x1-{dead}-4567abcd",
        "stale": ".stale-mesh_1x1-89abcdef",
        "alive (this process)": f".tmp-mesh_1x1-h{host}-p{os.getpid()}-aaaabbbb",
        "another host": f".tmp-mesh_1x1-h{other_host}-p{dead}-ccccdddd",
    }
    for name in names.values():
        (parent / name).mkdir()
        (parent / name / "half.tensorbin").write_bytes(b"x" * 100)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _load(dense_config, mesh, tmp_path).reason == "cache hit"
    left = {p.name for p in parent.iterdir() if p.name.startswith(".")}
    assert left == {names["alive (this process)"], names["another host"]}
    assert "interrupted conversion" in caplog.text


def test_killed_conversion_leaves_a_directory_the_next_run_removes(dense_config, mesh, tmp_path):
    """kill -9 during conversion: the temporary entry stays, the next run removes it and converts."""
    script = (
        "import os, signal, sys\n"
        "from deepseek_tt.weights.cache import WeightCache\n"
        "from reference_models.presets import get_preset\n"
        f"cache = WeightCache({str(tmp_path)!r}, get_preset('tiny', num_layers=1), 'default', (1, 1), {{'random': {{'seed': 3}}}})\n"
        "def convert(out):\n"
        "    (out / 'half.tensorbin').write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "cache.load_or_convert(convert)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    leftovers = list(tmp_path.glob("*/.tmp-*"))
    assert len(leftovers) == 1
    cache = WeightCache(tmp_path, get_preset("tiny", num_layers=1), "default", (1, 1), {"random": {"seed": 3}})
    cache_module.clean_stale_temporaries(cache.cache_dir)
    assert not leftovers[0].exists()


def _write_safetensors(path, nbytes: int) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.arange(nbytes // 4, dtype=torch.float32)}, str(path))


def test_source_identity_sees_a_changed_byte_anywhere_in_a_shard(tmp_path):
    """The old identity hashed the first MiB only: a same-size edit past it was a cache hit."""
    shard = tmp_path / "model-00001-of-00001.safetensors"
    _write_safetensors(shard, 3 << 20)
    before = cache_module.checkpoint_identity(tmp_path)
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01  # far past the first MiB; same size
    time.sleep(0.01)
    shard.write_bytes(bytes(data))
    after = cache_module.checkpoint_identity(tmp_path)
    assert after != before
    assert after["checkpoint"][shard.name]["size"] == before["checkpoint"][shard.name]["size"]


def test_source_identity_reads_only_the_header(tmp_path, monkeypatch):
    shard = tmp_path / "model.safetensors"
    _write_safetensors(shard, 4 << 20)
    read = []
    real_open = type(shard).open

    def counting_open(self, *args, **kwargs):
        handle = real_open(self, *args, **kwargs)
        original = handle.read
        handle.read = lambda n=-1: (read.append(n), original(n))[1]
        return handle

    monkeypatch.setattr(type(shard), "open", counting_open)
    cache_module.checkpoint_identity(tmp_path)
    assert sum(read) < 4096


def test_cache_dir_that_is_a_file_is_a_clear_error(dense_config, mesh, tmp_path):
    a_file = tmp_path / "cache"
    a_file.write_text("not a directory")
    with pytest.raises(cache_module.CacheDirError, match=str(a_file)):
        _load(dense_config, mesh, a_file)
    assert a_file.read_text() == "not a directory"


def test_unwritable_cache_dir_is_a_clear_error(dense_config, mesh, tmp_path):
    # /proc refuses new directories even to root (a chmod'ed directory does not stop root)
    with pytest.raises(cache_module.CacheDirError, match="not writable"):
        _load(dense_config, mesh, "/proc/deepseek_tt_cache")


def test_verified_loads_catch_a_flipped_byte_at_any_size(dense_config, mesh, tmp_path, monkeypatch):
    """No up-front pass (as for a cache over CHECKSUM_LIMIT_BYTES): the load itself finds the corruption."""
    from deepseek_tt.config.run_config import create_run_config
    from deepseek_tt.modules.model import Model

    monkeypatch.setattr(cache_module, "CHECKSUM_LIMIT_BYTES", 0)
    result = _load(dense_config, mesh, tmp_path)
    victim = sorted(result.entry_dir.rglob("*.tensorbin"))[-1]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    again = _load(dense_config, mesh, tmp_path)
    assert again.reason == "cache hit"  # sizes agree: only the checksum can tell
    loads = again.verified_loads()
    model_config = Model.prefill_model_config(dense_config, mesh)
    with pytest.raises(cache_module.CorruptCacheFileError, match=victim.name):
        create_run_config(model_config, again.weight_config, {"mesh_device": mesh}, weight_root=again.entry_dir, loaded=loads)
    assert 0 < loads.verified_files < len(again.checksums) + 1


def test_weight_source_reads_the_identity_once_and_refuses_other_weights(tmp_path, monkeypatch):
    from deepseek_tt.runtime.model_config import resolve_weight_source
    from deepseek_tt.weights import convert as convert_module
    from deepseek_tt.weights.convert import WeightSource

    _write_safetensors(tmp_path / "model.safetensors", 1 << 10)
    calls = []
    monkeypatch.setattr(convert_module, "checkpoint_identity", lambda path: calls.append(path) or {"checkpoint": {}})
    source = WeightSource.of(tmp_path, random_weights=False, seed=0)
    assert source.identity() is source.identity() and len(calls) == 1
    assert resolve_weight_source("load", tmp_path, False, 0, source) is source
    with pytest.raises(ValueError, match="does not name the weights"):
        resolve_weight_source("load", None, True, 0, source)
    with pytest.raises(ValueError, match="exactly one of model_path or random_seed"):
        WeightSource()
