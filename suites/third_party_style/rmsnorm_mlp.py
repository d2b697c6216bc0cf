"""A small TT-NN module written as third-party code is: ``import ttnn`` at top level, no project imports."""

import torch
import ttnn


class RMSNormMLP:
    """y = W2 (silu(W1 n) * W3 n) with n = RMSNorm(x), weights sharded over the mesh columns."""

    def __init__(self, mesh_device: ttnn.Device, norm_weight: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                 w3: torch.Tensor, eps: float = 1e-6):
        self.mesh_device, self.eps = mesh_device, eps
        cols = mesh_device.shape[1]
        replicate = ttnn.ReplicateTensorToMesh(mesh_device)
        self.norm_weight = ttnn.from_torch(norm_weight.reshape(1, 1, -1, 32), dtype=ttnn.bfloat16, layout=ttnn.ROW_MAJOR_LAYOUT,
                                           device=mesh_device, mesh_mapper=replicate)
        def shard(w, dim):
            return ttnn.from_torch(w.T.contiguous(), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=mesh_device,
                                   mesh_mapper=ttnn.ShardTensor2dMesh(mesh_device, mesh_shape=list(mesh_device.shape), dims=(None, dim)))
        self.w1, self.w3, self.w2 = shard(w1, -1), shard(w3, -1), shard(w2, -2)
        self.cols = cols
        self.compute = ttnn.WormholeComputeKernelConfig(math_fidelity=ttnn.MathFidelity.HiFi4, fp32_dest_acc_en=True)

    def __call__(self, x: ttnn.Tensor) -> ttnn.Tensor:
        n = ttnn.rms_norm(x, epsilon=self.eps, weight=self.norm_weight)
        gate = ttnn.linear(n, self.w1, compute_kernel_config=self.compute)
        up = ttnn.linear(n, self.w3, compute_kernel_config=self.compute)
        hidden = ttnn.silu(gate) * up
        out = ttnn.linear(hidden, self.w2, compute_kernel_config=self.compute)
        if self.cols > 1:
            out = ttnn.all_reduce(out, cluster_axis=1)
        return out
