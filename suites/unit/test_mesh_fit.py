"""The demo's up-front mesh check (``deepseek_tt.runtime.mesh_fit``) agrees with the model's own: a mesh it
accepts builds the model's prefill and decode configs, a mesh it refuses makes them raise."""

from __future__ import annotations

import pytest

from deepseek_tt.backend import ttnn
from deepseek_tt.runtime.mesh_fit import describe_misfit, fitting_meshes, mesh_problems
from deepseek_tt.modules.model import Model
from reference_models.presets import get_preset

pytestmark = pytest.mark.unit


def _model_configs_build(config, shape) -> bool:
    device = ttnn.open_mesh_device(ttnn.MeshShape(*shape))
    try:
        Model.prefill_model_config(config, device)
        Model.decode_model_config(config, device)
        return True
    except ValueError:
        return False
    finally:
        ttnn.close_mesh_device(device)


@pytest.mark.parametrize("preset", ["tiny", "galaxy-tiny"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (1, 8), (4, 8), (2, 4)])
def test_verdict_matches_the_model_configs(preset, shape):
    config = get_preset(preset)
    assert config.vocab_size % (shape[1] * 32) == 0  # the one rule outside the model configs (LM head conversion)
    assert (not mesh_problems(config, shape)) == _model_configs_build(config, shape)


def test_message_names_the_problem_and_the_meshes_that_fit():
    config = get_preset("tiny")
    message = describe_misfit(config, (4, 8))
    assert "4 attention heads do not split over 8 mesh columns" in message
    assert "(it fits N150 (1x1), N300 (1x2))" in message
    assert describe_misfit(config, (1, 1)) is None
    assert "TG (4x8)" in fitting_meshes(get_preset("galaxy-tiny"))


WORMHOLE_DRAM = 12 * 2**30


def test_full_model_memory_on_one_galaxy_and_what_fits_instead():
    """DeepSeek-V3 at the default policy does not fit a Galaxy's chips (routed experts ~15 GB a chip alone); the
    message says how much it needs and what fits; a dual Galaxy holds it; the embedded model fits one chip."""
    from deepseek_tt.runtime.mesh_fit import describe_memory_misfit, device_memory_need

    full = get_preset("full")
    need = device_memory_need(full, "default", (4, 8), "bp", 4096)
    assert need > WORMHOLE_DRAM
    message = describe_memory_misfit(full, "default", (4, 8), "bp", 4096, WORMHOLE_DRAM)
    assert message and f"{need / 2**30:.1f} GiB" in message and "4x8" in message and "--mesh-shape DUAL (8x8)" in message
    assert describe_memory_misfit(full, "default", (8, 8), "bp", 4096, WORMHOLE_DRAM) is None
    # a long context's KV cache can be what does not fit: then a shorter --max-seq-len is offered
    long_context = describe_memory_misfit(full, "default", (8, 8), "bp", 32768, WORMHOLE_DRAM)
    assert long_context and "--max-seq-len 1024" in long_context
    assert device_memory_need(get_preset("galaxy-tiny", num_layers=2), "default", (1, 1), "bp", 4096) < 2**30


def test_demo_and_server_refuse_on_a_device_and_the_demo_warns_on_the_emulator(monkeypatch, tmp_path, caplog, capsys):
    """Before anything is converted (the check is the models' ``load``'s): on a device a model over a chip's DRAM
    is refused by the demo and the server (exit 2, nothing written to the cache); the emulator runs it and warns.
    The capacity is shrunk to make the embedded model too big."""
    import deepseek_tt.backend as backend
    from deepseek_tt.demo.cli import main
    from deepseek_tt.perf import hardware

    monkeypatch.setitem(hardware.DRAM_BYTES_PER_CHIP, "WORMHOLE_B0", 1 << 20)
    common = ["--max-new-tokens", "1", "--runtime", "tt", "--no-progress", "Hello"]
    monkeypatch.setattr(backend, "backend_name", lambda: "ttnn")
    cache = tmp_path / "device-cache"
    assert main(common + ["--cache-dir", str(cache)]) == 2
    error = capsys.readouterr().err
    assert "error: --mesh-shape 1x1: the weights (default policy) and KV cache" in error and "of DRAM" in error
    assert not cache.exists() or not any(cache.iterdir())
    assert main(common + ["--cache-dir", str(cache), "--mesh-shape", "2x2", "--generator", "pp"]) == 2
    assert "error: --mesh-shape 2x2:" in (error := capsys.readouterr().err) and "under --generator pp" in error
    assert not cache.exists() or not any(cache.iterdir())
    from deepseek_tt.serving.__main__ import main as serve

    assert serve(["--cache-dir", str(cache), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "error: --mesh-shape 1x1: the weights (default policy) and KV cache (1024 tokens per user)" in error
    assert not cache.exists() or not any(cache.iterdir())
    monkeypatch.undo()
    monkeypatch.setitem(hardware.DRAM_BYTES_PER_CHIP, "WORMHOLE_B0", 1 << 20)
    with caplog.at_level("WARNING", logger="deepseek_tt.runtime.mesh_fit"):
        assert main(common + ["--cache-dir", str(tmp_path / "emulator-cache")]) == 0
    assert any("on a device the weights" in r.getMessage() and "of DRAM" in r.getMessage() for r in caplog.records)
