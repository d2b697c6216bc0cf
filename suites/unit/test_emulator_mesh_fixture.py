"""The ``mesh_device`` fixture: default shape, indirect parametrization by tuple, name and kwargs."""

from __future__ import annotations

import pytest

from fixtures.devices import _requested_shape_and_kwargs, available_devices

pytestmark = pytest.mark.unit


def test_default_shape_follows_mesh_shape_option(mesh_device, mesh_shape):
    assert tuple(mesh_device.shape) == tuple(mesh_shape)


@pytest.mark.parametrize("mesh_device", [(1, 1), (1, 8), (4, 8)], indirect=True)
def test_indirect_shape(mesh_device, request):
    rows, cols = request.node.callspec.params["mesh_device"]
    assert tuple(mesh_device.shape) == (rows, cols)
    assert mesh_device.get_num_devices() == rows * cols


@pytest.mark.parametrize("mesh_device", ["TG", {"mesh_shape": (2, 4), "trace_region_size": 4096}], indirect=True)
def test_indirect_name_and_kwargs(mesh_device, request):
    param = request.node.callspec.params["mesh_device"]
    expected = (4, 8) if param == "TG" else (2, 4)
    assert tuple(mesh_device.shape) == expected


def test_parameter_forms_and_bad_parameters():
    assert _requested_shape_and_kwargs(None, (1, 2)) == ((1, 2), {})
    assert _requested_shape_and_kwargs("T3K", (1, 1)) == ((1, 8), {})
    assert _requested_shape_and_kwargs({"trace_region_size": 8}, (4, 8)) == ((4, 8), {"trace_region_size": 8})
    with pytest.raises(pytest.UsageError, match="expected"):
        _requested_shape_and_kwargs((1, 2, 3), (1, 1))
    with pytest.raises(pytest.UsageError, match=">= 1"):
        _requested_shape_and_kwargs((0, 2), (1, 1))


def test_emulator_has_no_device_limit():
    assert available_devices() is None
