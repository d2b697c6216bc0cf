"""Third-party style module test: the ``mesh_device`` fixture comes from the plugin, ``ttnn`` is the emulator."""

import pytest
import torch
import ttnn
from rmsnorm_mlp import RMSNormMLP


def reference(x, g, w1, w2, w3, eps=1e-6):
    n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g
    return (torch.nn.functional.silu(n @ w1.T) * (n @ w3.T)) @ w2.T


def pcc(a, b):
    return torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1].item()


@pytest.mark.parametrize("mesh_device", [(1, 1), (1, 4)], indirect=True)
def test_rmsnorm_mlp(mesh_device):
    torch.manual_seed(0)
    hidden, inter = 128, 256
    x = torch.randn(1, 1, 32, hidden)
    g, w1, w3 = torch.rand(hidden) + 0.5, torch.randn(inter, hidden) / hidden**0.5, torch.randn(inter, hidden) / hidden**0.5
    w2 = torch.randn(hidden, inter) / inter**0.5
    module = RMSNormMLP(mesh_device, g, w1, w2, w3)
    tt_x = ttnn.from_torch(x, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=mesh_device,
                           mesh_mapper=ttnn.ReplicateTensorToMesh(mesh_device))
    out = ttnn.to_torch(ttnn.get_device_tensors(module(tt_x))[0])
    assert out.shape == (1, 1, 32, hidden)
    assert pcc(reference(x, g, w1, w2, w3), out) > 0.999


def test_default_mesh_comes_from_the_option(mesh_device, request):
    assert isinstance(mesh_device, ttnn.Device)
    assert list(mesh_device.shape) == [int(d) for d in request.config.getoption("--mesh-shape").split("x")]
