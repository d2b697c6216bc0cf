"""The divergence drill-down names the layer and submodule where the TT model leaves the reference.

A random-weight checkpoint of the embedded model's shapes (4 layers: 2 dense, 2 MoE). The TT model gets
the same weights except layer 1's MLP down-projection, perturbed (the reference keeps the originals):
the drill-down must name ``layers.1.mlp`` first, while the unperturbed model passes there. The hooks must
not change either side's logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepseek_tt.accuracy.drilldown import assert_pcc_with_drilldown, drilldown_prefill
from deepseek_tt.accuracy.metrics import pcc
from deepseek_tt.accuracy.thresholds import pcc_threshold
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.modules.model import Model
from deepseek_tt.runtime.tt_model import TtModel
from deepseek_tt.weights import LazyStateDict, load_hf_config
from reference_models.checkpoint import write_checkpoint
from reference_models.reference import load_reference_model
from reference_models.train import model_config

pytestmark = [pytest.mark.accuracy, pytest.mark.quick]

PERTURBED_KEY = "model.layers.1.mlp.down_proj.weight"
SEQ_LEN = 40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(model_config("tiny-en"), tmp_path_factory.mktemp("drilldown") / "tiny-en", seed=5)


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> torch.nn.Module:
    return load_reference_model(checkpoint, torch.float32)


def _tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (SEQ_LEN,), generator=torch.Generator().manual_seed(11))


def _perturbed_model(checkpoint: Path, mesh_device, out: Path) -> TtModel:
    """A TtModel whose layer-1 MLP down-projection carries noise of half the weights' spread."""
    state = dict(LazyStateDict(checkpoint, dequantize=True))
    weight = state[PERTURBED_KEY]
    state[PERTURBED_KEY] = weight + 0.5 * weight.std() * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
    config = load_hf_config(checkpoint)
    return TtModel(config, mesh_device, Model.convert_weights(config, state, out, mesh_device), None, max_seq_len=64)


def test_drilldown_names_the_perturbed_layer(checkpoint, reference, mesh_device, cache_dir, tmp_path, record_result):
    tokens = _tokens(reference.config.vocab_size)
    healthy = drilldown_prefill(TtModel.load(checkpoint, mesh_device, cache_dir, max_seq_len=64, progress=False), reference, tokens)
    perturbed = _perturbed_model(checkpoint, mesh_device, tmp_path / "weights")
    with torch.no_grad():
        value = pcc(reference(input_ids=tokens[None]).logits[0], perturbed.prefill(tokens, 0))
    threshold = 0.99  # above what the perturbed model reaches, whatever the table says for logits
    assert value < threshold
    with pytest.raises(AssertionError, match=r"(?s)model logits: PCC .* < 0.99\nfirst divergence: layers.1.mlp\n.*stage") as info:
        assert_pcc_with_drilldown(value, threshold, "model logits", lambda: drilldown_prefill(perturbed, reference, tokens))
    message = str(info.value)
    for row in healthy.rows():
        record_result(module=row["submodule"], mode="prefill", metric=f"drilldown_pcc.{row['stage']}", value=row["pcc"],
                      threshold=row["threshold"], seq_len=SEQ_LEN, batch=1, mesh="x".join(map(str, mesh_shape(mesh_device))))
    stages = list(healthy.table["stage"])
    layers = reference.config.num_hidden_layers
    assert stages[0] == "embedding" and stages[-2:] == ["norm", "logits"] and len(stages) == 3 + 3 * layers
    assert {"layers.1.mlp", "layers.2.moe", "layers.3.block"} <= set(stages)
    passed = dict(zip(healthy.table["stage"], healthy.table["passed"]))
    assert all(passed[s] for s in stages[: stages.index("layers.1.block") + 1]), healthy.describe()
    assert all(f"{stage} " in message for stage in stages), message  # the whole table


def test_assertion_does_not_drill_down_when_it_passes():
    def never() -> None:
        raise RuntimeError("drill-down computed for a passing check")

    assert_pcc_with_drilldown(pcc_threshold("model", "prefill"), pcc_threshold("model", "prefill"), "model logits", never)


def test_hooks_leave_both_sides_unchanged(checkpoint, reference, mesh_device, cache_dir):
    from deepseek_tt.accuracy.drilldown import TtStageRecorder, capture_reference

    model = TtModel.load(checkpoint, mesh_device, cache_dir, max_seq_len=64, progress=False)
    tokens = _tokens(reference.config.vocab_size)
    plain = model.prefill(tokens, 0)
    recorder = TtStageRecorder(mesh_device)
    hooked = model.prefill(tokens, 0, observer=recorder)
    captured = recorder.captured
    assert torch.equal(plain, hooked) and torch.equal(captured["logits"][:SEQ_LEN, : model.vocab_size], plain)
    layers = reference.config.num_hidden_layers
    per_layer = [f"layers.{i}.{sub}" for i in range(layers) for sub in ("attention", "moe" if i >= reference.config.first_k_dense_replace else "mlp", "block")]
    assert list(captured) == ["embedding", *per_layer, "norm", "logits"]
    with torch.no_grad():
        expected = reference(input_ids=tokens[None]).logits[0]
        with capture_reference(reference) as ref_captured:
            again = reference(input_ids=tokens[None]).logits[0]
    assert torch.equal(expected, again) and torch.equal(ref_captured["logits"], expected)


def test_lone_block_drilldown(checkpoint, reference, mesh_device, cache_dir):
    """A block test's drill-down: one decoder block under both captures, named by its own layer index."""
    from deepseek_tt.accuracy.drilldown import drilldown_of
    from deepseek_tt.modules import kv_cache
    from deepseek_tt.modules.forward_context import ForwardContext
    from deepseek_tt.modules.layout import residual_to_device
    from deepseek_tt.modules.rope import RotarySetup
    from deepseek_tt.weights.convert import load_or_convert_model_weights
    from reference_models.reference import get_layer
    from suites.accuracy.model_lib import activations, reference_layer

    layer, seq_len = 1, 64
    config = reference.config
    paged = kv_cache.paged_config_for(seq_len, mesh_cols=mesh_shape(mesh_device)[1])
    weights = load_or_convert_model_weights(config, mesh_device, cache_dir, model_path=checkpoint, progress=False)
    state = Model.create_state(config, mesh_device, paged)
    cfg = Model.run_config(Model.prefill_model_config(config, mesh_device), weights.weight_config, state, weight_root=weights.entry_dir)
    x = activations(seq_len, config.hidden_size, seed=3)
    rope = RotarySetup(config, mesh_device).prefill_tensors(seq_len)
    table = kv_cache.create_page_table(paged, mesh_device)
    result = drilldown_of(
        reference,
        lambda: reference_layer(reference, layer, x),
        lambda observer: cfg["blocks"][layer].forward_prefill(
            residual_to_device(x, mesh_device, decode=False), cfg["layers"][layer],
            ForwardContext.prefill(rope, table, 0, layer=layer, observer=observer),
        ),
        mesh_device,
        layers={layer: get_layer(reference, layer)},
    )
    assert list(result.table["stage"]) == ["layers.1.attention", "layers.1.mlp", "layers.1.block"], result.describe()
    assert result.first_divergence is None, result.describe()
