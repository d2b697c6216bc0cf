"""Prompt files in both seed layouts, --num-prompts, and files in neither layout."""

from __future__ import annotations


import pytest

from deepseek_tt.demo.errors import DemoInputError
from deepseek_tt.demo.output import default_output_path
from deepseek_tt.demo.prompts import load_prompts_file
from suites.demo.conftest import write_prompts

pytestmark = pytest.mark.demo

PROMPTS = ["First prompt", "Second prompt", "Third prompt"]


@pytest.mark.parametrize("layout", ["list", "object"])
def test_both_layouts(tmp_path, layout):
    assert load_prompts_file(write_prompts(tmp_path / "p.json", PROMPTS, layout)) == PROMPTS


def test_num_prompts_truncates_in_file_order(tmp_path):
    path = write_prompts(tmp_path / "p.json", PROMPTS)
    assert load_prompts_file(path, 2) == PROMPTS[:2]
    assert load_prompts_file(path, 3) == PROMPTS


@pytest.mark.parametrize("n", [0, 4, -1])
def test_num_prompts_out_of_range(tmp_path, n):
    with pytest.raises(DemoInputError, match=rf"--num-prompts {n}: must be between 1 and 3"):
        load_prompts_file(write_prompts(tmp_path / "p.json", PROMPTS), n)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"items": []}', "neither layout"),
        ('"just text"', "neither layout"),
        ('[{"text": "x"}]', 'entry 0 is not an object with a string "prompt"'),
        ('["x"]', "entry 0 is not an object"),
        ("[]", "holds no prompts"),
        ('{"prompts": []}', "holds no prompts"),
        ('[{"prompt": "  "}]', 'entry 0 has an empty "prompt"'),
        ("[{", "not valid JSON"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DemoInputError, match=message) as info:
        load_prompts_file(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DemoInputError, match="file not found"):
        load_prompts_file(tmp_path / "none.json")


def test_default_output_path_is_stem_output_json():
    assert str(default_output_path("some/dir/test_prompts.json")) == "test_prompts_output.json"
