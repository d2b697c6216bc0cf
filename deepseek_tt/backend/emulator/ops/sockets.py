"""Mesh sockets: device-to-device transfers between two mesh devices (e.g. two submeshes of one mesh).

ttnn 0.81 (``ttnn._ttnn.mesh_socket``): ``create_socket_pair(sender_mesh_device, receiver_mesh_device,
socket_config) -> (sender, receiver)``; ``SocketConfig(connections, memory_config, sender_rank=None,
receiver_rank=None)``, one ``SocketConnection(sender_core, receiver_core)`` per device pair
(``MeshCoreCoord(device_coord, core_coord)``); ``ttnn.experimental.send_async(input_tensor, mesh_socket)``
-> ``[]`` and ``ttnn.experimental.recv_async(output_tensor, mesh_socket)`` -> ``[output_tensor]``.

Emulated semantics: a send queues, for each connection, the sender device's shard of the input; the
matching receive writes each queued shard into the output tensor's shard of the connected receiver
device, in place. Devices of the receiver mesh without a connection keep their values, and nothing
reaches any other mesh. Receives take sends in order; a receive with nothing sent raises (a device
would wait forever).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any

from .. import types as T
from ._common import data, device_of, mesh_shape, require_device
from .trace import device_op

#: bytes of one tile page per dtype (a socket's FIFO must hold at least one page)
_TILE_PAGE_BYTES = {"bfloat16": 2048, "float32": 4096, "bfloat8_b": 1088, "bfloat4_b": 576}


class SocketEndpoint(enum.Enum):
    SENDER = 0
    RECEIVER = 1


class MeshCoreCoord:
    """A core on one device of a mesh: ``MeshCoreCoord(device_coord, core_coord)``."""

    def __init__(self, device_coord: Any, core_coord: Any) -> None:
        self.device_coord = device_coord
        self.core_coord = core_coord

    def __repr__(self) -> str:
        return f"MeshCoreCoord({self.device_coord!r}, {self.core_coord!r})"


class SocketConnection:
    """One sender core -> receiver core link of a socket."""

    def __init__(self, sender_core: MeshCoreCoord, receiver_core: MeshCoreCoord) -> None:
        self.sender_core = sender_core
        self.receiver_core = receiver_core


class SocketMemoryConfig:
    """Where the socket's FIFO lives and its size in bytes."""

    def __init__(self, socket_storage_type: Any, fifo_size: int, sender_sub_device: Any = None,
                 receiver_sub_device: Any = None, per_core_allocation: bool = False) -> None:
        if int(fifo_size) <= 0:
            raise RuntimeError(f"SocketMemoryConfig: fifo_size must be positive, got {fifo_size}")
        self.socket_storage_type = socket_storage_type
        self.fifo_size = int(fifo_size)
        self.per_core_allocation = bool(per_core_allocation)


class SocketConfig:
    """Connections and FIFO of a socket pair."""

    def __init__(self, connections: Any, memory_config: SocketMemoryConfig, sender_rank: int | None = None,
                 receiver_rank: int | None = None) -> None:
        self.connections = list(connections)
        if not self.connections:
            raise RuntimeError("SocketConfig: at least one SocketConnection is needed")
        self.memory_config = memory_config


class MeshSocket:
    """One end of a socket pair (make pairs with ``create_socket_pair``)."""

    def __init__(self, device: Any, config: SocketConfig) -> None:
        self._device = device
        self._config = config
        self._endpoint = SocketEndpoint.SENDER
        self._channel: deque = deque()

    def get_mesh_device(self) -> Any:
        return self._device

    def get_connection_config(self) -> list[SocketConnection]:
        return list(self._config.connections)

    def get_socket_endpoint_type(self) -> SocketEndpoint:
        return self._endpoint


def _device_index(coord: Any, shape: tuple[int, int], where: str) -> int:
    rows, cols = shape
    r, c = int(coord[0]), int(coord[1])
    if not (0 <= r < rows and 0 <= c < cols):
        raise RuntimeError(f"{where}: device coordinate ({r}, {c}) is outside the mesh {rows}x{cols}")
    return r * cols + c


def create_socket_pair(sender_mesh_device: Any, receiver_mesh_device: Any, socket_config: SocketConfig) -> tuple[MeshSocket, MeshSocket]:
    """A connected (sender, receiver) pair; every connection's coordinates must lie on their meshes."""
    where = "ttnn.create_socket_pair"
    for conn in socket_config.connections:
        _device_index(conn.sender_core.device_coord, tuple(sender_mesh_device.shape), where)
        _device_index(conn.receiver_core.device_coord, tuple(receiver_mesh_device.shape), where)
    sender, receiver = MeshSocket(sender_mesh_device, socket_config), MeshSocket(receiver_mesh_device, socket_config)
    receiver._endpoint = SocketEndpoint.RECEIVER
    receiver._channel = sender._channel
    return sender, receiver


def _check_socket(t: Any, socket: Any, endpoint: SocketEndpoint, op: str) -> None:
    if not isinstance(socket, MeshSocket):
        raise TypeError(f"{op}: mesh_socket must be a ttnn.MeshSocket, got {type(socket).__name__}")
    require_device(t, op)
    if socket.get_socket_endpoint_type() is not endpoint:
        raise RuntimeError(f"{op}: the socket is a {socket.get_socket_endpoint_type().name} end, expected {endpoint.name}")
    if device_of(t) is not socket.get_mesh_device():
        raise RuntimeError(f"{op}: the tensor is not on the socket's mesh device")
    page = _TILE_PAGE_BYTES.get(t.dtype.name.lower(), 2048) if t.layout == T.Layout.TILE else 32
    if socket._config.memory_config.fifo_size < page:
        raise RuntimeError(f"{op}: socket fifo_size {socket._config.memory_config.fifo_size} is below one page ({page} bytes)")


@device_op
def send_async(input_tensor: Any, mesh_socket: Any) -> list:
    """``ttnn.experimental.send_async``: queue each connection's sender shard for the receiver."""
    op = "ttnn.experimental.send_async"
    _check_socket(input_tensor, mesh_socket, SocketEndpoint.SENDER, op)
    x = data(input_tensor)
    shape = mesh_shape(input_tensor)
    shards = {}
    for conn in mesh_socket.get_connection_config():
        shards[tuple(int(v) for v in conn.receiver_core.device_coord.coords)] = x[_device_index(conn.sender_core.device_coord, shape, op)].clone()
    mesh_socket._channel.append((input_tensor.dtype, input_tensor.layout, tuple(x.shape[1:]), shards))
    return []


@device_op
def recv_async(output_tensor: Any, mesh_socket: Any) -> list:
    """``ttnn.experimental.recv_async``: write the oldest send's shards into ``output_tensor`` in place."""
    op = "ttnn.experimental.recv_async"
    _check_socket(output_tensor, mesh_socket, SocketEndpoint.RECEIVER, op)
    if not mesh_socket._channel:
        raise RuntimeError(f"{op}: nothing was sent on this socket (a device would wait forever)")
    dtype, layout, shape, shards = mesh_socket._channel.popleft()
    out = data(output_tensor)
    if (dtype, layout, shape) != (output_tensor.dtype, output_tensor.layout, tuple(out.shape[1:])):
        raise RuntimeError(
            f"{op}: received {dtype.name} {layout.name} {list(shape)} into an output of "
            f"{output_tensor.dtype.name} {output_tensor.layout.name} {list(out.shape[1:])}"
        )
    updated = out.clone()
    rows_cols = mesh_shape(output_tensor)
    for coord, shard in shards.items():
        updated[_device_index(coord, rows_cols, op)] = shard.to(updated.dtype)
    output_tensor._data = updated
    return [output_tensor]


EXPERIMENTAL_OPS = {"send_async": send_async, "recv_async": recv_async}

__all__ = [
    "MeshCoreCoord",
    "MeshSocket",
    "SocketConfig",
    "SocketConnection",
    "SocketEndpoint",
    "SocketMemoryConfig",
    "create_socket_pair",
]
