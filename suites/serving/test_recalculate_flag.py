"""``python -m deepseek_tt.serving --recalculate-weights`` reaches the weight cache."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("flag", [True, False])
def test_server_recalculate_weights_reaches_the_cache(tmp_path, monkeypatch, capsys, flag):
    import deepseek_tt.runtime.tt_model as tt_model
    from deepseek_tt.serving.__main__ import main

    seen = {}

    def stop_here(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stopped before conversion")

    monkeypatch.setattr(tt_model, "load_or_convert_model_weights", stop_here)
    argv = ["--cache-dir", str(tmp_path / "cache"), "--mesh-shape", "1x1", "--backend", "emulator"]
    assert main(argv + (["--recalculate-weights"] if flag else [])) == 2
    assert seen["recalculate"] is flag
    assert "error: stopped before conversion" in capsys.readouterr().err
