"""The demo's ``memory`` block (``--runtime tt``) reports the per-device weight bytes of the model it ran: bp
(every row the same) and pp (each row its stage's), equal to the roofline's computed layout
(``deepseek_tt.perf.roofline.stored_weight_bytes_per_device``).

Model: the embedded trained model (2 dense + 2 MoE layers) on a 2x2 mesh (pp: the dense layers on row 0, the MoE
layers on row 1).
"""

from __future__ import annotations

import json

import pytest

from deepseek_tt.perf.roofline import stored_weight_bytes_per_device
from deepseek_tt.weights.hf_config import load_hf_config

pytestmark = pytest.mark.demo


def test_memory_block_reports_bp_and_pp_per_device_bytes(run_cli, tmp_path):
    from reference_models.embedded import embedded_model_path

    try:
        model_dir = embedded_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"embedded trained model not available: {exc}")
    config = load_hf_config(model_dir)
    memory = {}
    for generator in ("bp", "pp"):
        out = tmp_path / f"{generator}.json"
        r = run_cli("--model-path", model_dir, "--mesh-shape", "2x2", "--generator", generator, "--max-new-tokens", 2,
                    "--cache-dir", tmp_path / "cache", "--output-path", out, "Hello", runtime="tt")
        assert r.code == 0, r.err
        memory[generator] = json.loads(out.read_text())["memory"]
        computed = [round(b) for b in stored_weight_bytes_per_device(config, "default", (2, 2), generator)]
        block = memory[generator]
        assert block["devices"] == 4 and block["weight_bytes_per_device_by_row"] == computed, generator
        assert (block["weight_bytes_per_device_max"], block["weight_bytes_per_device_min"]) == (max(computed), min(computed))
        assert block["weight_bytes_total"] == 2 * sum(computed)
    assert memory["bp"]["weight_bytes_per_device_max"] == memory["bp"]["weight_bytes_per_device_min"]
    # The mesh stores bp's row-replicated weights once under pp; the routed experts, which bp spreads over all
    # 4 chips, sit on the MoE row's 2 chips, so pp's fullest row holds more than a bp device (docs/PARALLELISM.md).
    assert memory["pp"]["weight_bytes_total"] < memory["bp"]["weight_bytes_total"]
    assert memory["pp"]["kv_cache_bytes_per_device_max"] == memory["bp"]["kv_cache_bytes_per_device_max"]
