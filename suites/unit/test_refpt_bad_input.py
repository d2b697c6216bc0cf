"""Bad input of the .refpt tools: the reader, ``inspect`` and the generator answer with one
``error:`` line naming the file or flag and exit status 2; no traceback, no input replaced."""

from __future__ import annotations

import shutil

import pytest
import torch

from deepseek_tt.accuracy.refpt import RefptError, load_refpt
from reference_models.embedded import embedded_model_path
from reference_models.refpt import main

pytestmark = pytest.mark.unit


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.fixture
def model_dir():
    return embedded_model_path()


def test_empty_refpt_is_named_by_the_reader_and_inspect(tmp_path, capsys):
    empty = tmp_path / "empty.refpt"
    empty.write_bytes(b"")
    with pytest.raises(RefptError, match="empty.refpt: empty file"):
        load_refpt(empty)
    assert main(["inspect", str(empty)]) == 2
    assert "empty.refpt: empty file (0 bytes)" in _one_error_line(capsys)


@pytest.mark.parametrize("value", ["abc", 2.5, [3], {"n": 3}, torch.tensor([1.5]), True])
def test_tf_prompt_len_of_the_wrong_type_is_named(tmp_path, value):
    path = tmp_path / "bad.refpt"
    torch.save({"reference_tokens": torch.arange(10).view(1, 10), "tf_prompt_len": value}, path)
    with pytest.raises(RefptError, match="'tf_prompt_len' must be an integer"):
        load_refpt(path)


def test_tf_prompt_len_as_a_one_element_tensor_is_read(tmp_path):
    path = tmp_path / "ok.refpt"
    torch.save({"reference_tokens": torch.arange(10).view(1, 10), "tf_prompt_len": torch.tensor(4)}, path)
    assert load_refpt(path).prompt_len() == 4


def test_inspect_with_a_bad_model_dir(tmp_path, capsys):
    ref = tmp_path / "r.refpt"
    torch.save({"reference_tokens": torch.arange(10).view(1, 10)}, ref)
    assert main(["inspect", str(ref), "--model-path", str(tmp_path / "nowhere")]) == 2
    assert "--model-path" in _one_error_line(capsys)
    broken = shutil.copytree(embedded_model_path(), tmp_path / "broken")
    (broken / "tokenizer.json").write_text("{not json")
    assert main(["inspect", str(ref), "--model-path", str(broken)]) == 2
    assert "tokenizer does not load" in _one_error_line(capsys)


def _gen(model_dir, out, *extra, prompt=("--prompt", "The quick brown fox jumps over the lazy dog")):
    return main(["--model-path", str(model_dir), *prompt, "--total-length", "8", "--output-file", str(out), *extra])


def test_generator_with_a_bad_model_dir(tmp_path, capsys):
    assert _gen(tmp_path / "nowhere", tmp_path / "o.refpt") == 2
    assert "--model-path" in _one_error_line(capsys) and not (tmp_path / "o.refpt").exists()
    (tmp_path / "empty").mkdir()
    assert _gen(tmp_path / "empty", tmp_path / "o.refpt") == 2
    assert "config.json" in _one_error_line(capsys)
    broken = shutil.copytree(embedded_model_path(), tmp_path / "broken")
    shard = sorted(broken.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    assert _gen(broken, tmp_path / "o.refpt") == 2
    assert "truncated" in _one_error_line(capsys) or "not a safetensors file" in capsys.readouterr().err


def test_generator_with_a_too_short_prompt(model_dir, tmp_path, capsys):
    assert _gen(model_dir, tmp_path / "o.refpt", prompt=("--prompt", "Hi")) == 2
    assert "needs at least 5 prompt tokens" in _one_error_line(capsys)
    assert _gen(model_dir, tmp_path / "o.refpt", prompt=("--prompt", "   ")) == 2
    assert "--prompt: the prompt is empty" in _one_error_line(capsys)


def test_generator_with_a_directory_or_an_input_as_output(model_dir, tmp_path, capsys):
    assert _gen(model_dir, tmp_path) == 2
    assert "is a directory" in _one_error_line(capsys)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("The quick brown fox jumps over the lazy dog")
    assert _gen(model_dir, prompt, prompt=("--prompt-file", str(prompt))) == 2
    assert "is an input of this run" in _one_error_line(capsys)
    assert prompt.read_text() == "The quick brown fox jumps over the lazy dog"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert _gen(model_dir, a_file / "o.refpt") == 2
    assert "is a file, not a directory" in _one_error_line(capsys)


def test_demo_with_an_empty_reference_file(tmp_path, capsys):
    from deepseek_tt.demo.cli import main as demo_main

    empty = tmp_path / "empty.refpt"
    empty.write_bytes(b"")
    code = demo_main(["--model-path", str(embedded_model_path()), "--token-accuracy", "--reference-file", str(empty),
                      "--runtime", "reference", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: --reference-file {empty}: empty file (0 bytes), not a torch.save file"
    ] and "Traceback" not in err
