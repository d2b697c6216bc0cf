"""Torch emulator of the ttnn API subset that the DeepSeek-V3 model uses (docs/DESIGN.md section 2).

Import it as ``from deepseek_tt.backend import ttnn``; it exposes real ttnn's names. The core
(types, numerics, Tensor, mesh, mappers, serialization) lives beside this file; ops live in ``ops/``
and register themselves here and in the ``transformer`` / ``experimental`` namespaces.
Numerics model: NUMERICS.md.
"""

from __future__ import annotations

from types import SimpleNamespace

from . import numerics
from .mesh import (
    ConcatMesh2dToTensor,
    ConcatMeshToTensor,
    MeshComposerConfig,
    MeshCoordinate,
    MeshDevice,
    MeshMapperConfig,
    MeshShape,
    MeshToTensor,
    PlacementReplicate,
    PlacementShard,
    ReplicateTensorToMesh,
    ReplicateTensorToMeshWrapper,
    ShardTensor2dMesh,
    ShardTensorToMesh,
    TensorToMesh,
    close_mesh_device,
    concat_mesh_to_tensor_composer,
    create_mesh_composer,
    create_mesh_mapper,
    get_num_devices,
    open_mesh_device,
    replicate_tensor_to_mesh_mapper,
    shard_tensor_to_mesh_mapper,
)
from .infra import *  # noqa: F401,F403  (Device, Tile, NdShardSpec, enums, semaphores, fabric config, ...)
from .infra import divup as _divup, roundup as _roundup
from .serialization import as_tensor, dump_tensor, load_tensor
from .tensor import (
    Tensor,
    deallocate,
    from_device,
    from_torch,
    get_device_tensors,
    is_tensor_storage_on_device,
    to_device,
    to_torch,
)
from .types import *  # noqa: F401,F403  (DataType, Layout, configs, ... under ttnn's names)
from .types import Arch, DataType, Layout, TILE_SIZE

CppTensorToMesh = TensorToMesh
CppMeshToTensor = MeshToTensor
GetNumAvailableDevices = get_num_devices

#: ``ttnn.transformer.*`` and ``ttnn.experimental.*`` ops; filled by the op modules.
transformer = SimpleNamespace()
experimental = SimpleNamespace()
device = SimpleNamespace(Arch=Arch)
#: ``ttnn.core``: the host helpers of real ttnn's ``ttnn/core.py``.
core = SimpleNamespace(divup=_divup, roundup=_roundup)


def _load_ops() -> None:
    """Import the op modules in ``ops/`` and export what they declare.

    Convention: a module's ``__all__`` names become ``ttnn.<name>``; its optional
    dicts ``TRANSFORMER_OPS`` / ``EXPERIMENTAL_OPS`` (name -> function) fill ``ttnn.transformer`` /
    ``ttnn.experimental``. Modules whose name starts with ``_`` are helpers and export nothing.
    """
    import importlib
    import pkgutil

    try:
        ops = importlib.import_module(f"{__name__}.ops")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.ops":
            raise
        return
    namespace = globals()
    for info in sorted(pkgutil.iter_modules(ops.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{ops.__name__}.{info.name}")
        for name in getattr(module, "__all__", ()):
            namespace[name] = getattr(module, name)
        for name, fn in getattr(module, "TRANSFORMER_OPS", {}).items():
            setattr(transformer, name, fn)
        for name, fn in getattr(module, "EXPERIMENTAL_OPS", {}).items():
            setattr(experimental, name, fn)


_load_ops()
