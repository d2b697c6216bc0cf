"""The small trained DeepSeek-V3-architecture model shipped with the project (the default model).

Fixtures, ``tox -e demo`` and the demo CLI use it when neither ``--model-path`` nor
``$DEEPSEEK_V3_HF_MODEL`` is given. It is an official-format directory (fp8 projections, tokenizer,
model card) built by ``python -m reference_models.build_embedded`` from a run of
``reference_models.train``; ``reference.refpt`` beside it is its teacher-forcing reference.
"""

from __future__ import annotations

from pathlib import Path

EMBEDDED_MODEL_NAME = "deepseek-v3-tiny-en"
EMBEDDED_MODEL_PATH: Path = Path(__file__).resolve().parent / "checkpoints" / EMBEDDED_MODEL_NAME
EMBEDDED_REFPT_NAME = "reference.refpt"
EMBEDDED_PROMPT_NAME = "reference_prompt.txt"


def embedded_model_path() -> Path:
    """The embedded model directory; ``FileNotFoundError`` naming it when it is missing or incomplete."""
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.json"):
        if not (EMBEDDED_MODEL_PATH / name).is_file():
            raise FileNotFoundError(f"embedded model {EMBEDDED_MODEL_PATH} lacks {name} (is the checkout complete?)")
    return EMBEDDED_MODEL_PATH


def embedded_refpt_path() -> Path:
    """The committed ``.refpt`` of the embedded model."""
    path = embedded_model_path() / EMBEDDED_REFPT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"embedded model reference file {path} is missing")
    return path


__all__ = ["EMBEDDED_MODEL_NAME", "EMBEDDED_MODEL_PATH", "embedded_model_path", "embedded_refpt_path"]
