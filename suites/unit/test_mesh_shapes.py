import pytest

from deepseek_tt.config.mesh import format_mesh_shape, parse_mesh_shape

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "shape"),
    [("TG", (4, 8)), ("t3k", (1, 8)), ("N150", (1, 1)), ("4x8", (4, 8)), ("(8, 8)", (8, 8)), ("QUAD", (16, 8))],
)
def test_parse_mesh_shape(text, shape):
    assert parse_mesh_shape(text) == shape


@pytest.mark.parametrize("text", ["GALAXY", "0x8", "4x", ""])
def test_unknown_mesh_shape_names_the_value(text):
    with pytest.raises(ValueError, match="unknown mesh shape"):
        parse_mesh_shape(text)


def test_format_mesh_shape():
    assert format_mesh_shape((4, 8)) == "4x8"
