"""Bad input of the training and embedded-model build scripts: one ``error:`` line naming the
flag or file, exit status 2, no traceback, the user's files untouched."""

from __future__ import annotations

import json

import pytest
import torch

from reference_models import build_embedded, train

pytestmark = pytest.mark.unit

MICRO = ["--size", "micro", "--batch-size", "2", "--seq-len", "32", "--max-docs", "60", "--threads", "1",
         "--log-every", "4", "--eval-every", "4", "--steps", "4"]


def _refused(capsys, code_or_exc, message: str) -> None:
    code = code_or_exc.value.code if isinstance(code_or_exc, pytest.ExceptionInfo) else code_or_exc
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert "error:" in last and message in last, err


@pytest.mark.parametrize("flag,value,message", [
    ("--log-every", "0", "--log-every must be >= 1"),
    ("--checkpoint-every", "0", "--checkpoint-every must be >= 1"),
    ("--batch-size", "-1", "--batch-size must be >= 1"),
    ("--seq-len", "1", "--seq-len must be >= 2"),
    ("--lr", "nan", "--lr must be a finite number > 0"),
    ("--grad-clip", "inf", "--grad-clip must be a finite number > 0"),
    ("--weight-decay", "-0.5", "--weight-decay must be a finite number >= 0"),
    ("--max-docs", "0", "--max-docs must be >= 1"),
])
def test_train_flags_out_of_range(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        train.main(["--out", str(tmp_path / "o"), *MICRO, f"{flag}={value}"])
    _refused(capsys, exc, message)
    assert not (tmp_path / "o").exists()


def test_train_out_that_is_a_file(tmp_path, capsys):
    a_file = tmp_path / "run"
    a_file.write_text("keep")
    _refused(capsys, train.main(["--out", str(a_file), *MICRO]), "is a file, not a directory")
    _refused(capsys, train.main(["--out", str(a_file / "sub"), *MICRO]), "is a file, not a directory")
    _refused(capsys, train.main(["--out", "/proc/deepseek_tt_train", *MICRO]), "--out /proc/deepseek_tt_train: cannot write there")
    assert a_file.read_text() == "keep"


def test_train_too_few_documents(tmp_path, capsys):
    _refused(capsys, train.main(["--out", str(tmp_path), *MICRO, "--max-docs=1"]), "--max-docs 1: too few documents")


@pytest.mark.parametrize("state,message", [
    (None, "no checkpoint at"),
    (b"\x00garbage", "is not a readable checkpoint"),
    ([1, 2, 3], "is not a checkpoint of this script"),
    ({"model": {}, "optimizer": {}, "step": "3", "history": [], "elapsed_s": 0, "args": {"size": "micro", "seed": 0}}, "is not a checkpoint of this script"),
])
def test_train_resume_from_a_bad_state(tmp_path, capsys, state, message):
    path = tmp_path / train.TRAIN_STATE
    if isinstance(state, bytes):
        path.write_bytes(state)
    elif state is not None:
        torch.save(state, path)
    before = path.read_bytes() if path.exists() else None
    _refused(capsys, train.main(["--out", str(tmp_path), *MICRO, "--resume"]), message)
    assert (path.read_bytes() if path.exists() else None) == before


def _fake_train_dir(root):
    (root / "hf").mkdir(parents=True)
    (root / "tokenizer").mkdir()
    (root / "hf" / "config.json").write_text("{}")
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    (root / "metrics.json").write_text(json.dumps({"seq_len": 32}))
    return root


def test_build_embedded_bad_input(tmp_path, capsys):
    train_dir = _fake_train_dir(tmp_path / "train")
    run = lambda *extra: build_embedded.main(["--train-dir", str(train_dir), *extra])  # noqa: E731
    _refused(capsys, build_embedded.main(["--train-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]), "missing metrics.json")
    _refused(capsys, run("--out", str(train_dir)), "overlaps --train-dir")
    _refused(capsys, run("--out", str(train_dir / "hf"), "--overwrite"), "overlaps --train-dir")
    _refused(capsys, run("--out", str(tmp_path), "--overwrite"), "overlaps --train-dir")
    _refused(capsys, run("--out", str(tmp_path / "o"), "--total-length", "2"), "--total-length must be >= 3")
    a_file = tmp_path / "file"
    a_file.write_text("keep")
    _refused(capsys, run("--out", str(a_file)), "is a file, not a directory")
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    _refused(capsys, run("--out", str(full)), "exists and is not empty; pass --overwrite")
    (train_dir / "metrics.json").write_text("[1, 2]")
    _refused(capsys, run("--out", str(tmp_path / "o")), "metrics.json has no positive integer 'seq_len'")
    (train_dir / "metrics.json").write_text("{oops")
    _refused(capsys, run("--out", str(tmp_path / "o")), "metrics.json is not readable JSON")
    assert a_file.read_text() == "keep" and (full / "mine.txt").read_text() == "keep"
    assert (train_dir / "hf" / "config.json").read_text() == "{}"


def test_train_seq_len_longer_than_the_data(tmp_path, capsys):
    _refused(capsys, train.main(["--out", str(tmp_path), *MICRO, "--seq-len=1000000"]), "--seq-len 1000000: longer than the data")
