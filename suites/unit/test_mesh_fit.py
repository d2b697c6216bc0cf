"""The demo's up-front mesh check (``deepseek_tt.demo.mesh_fit``) agrees with the model's own: a mesh it
accepts builds the model's prefill and decode configs, a mesh it refuses makes them raise."""

from __future__ import annotations

import pytest

from deepseek_tt.backend import ttnn
from deepseek_tt.demo.mesh_fit import describe_misfit, fitting_meshes, mesh_problems
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
