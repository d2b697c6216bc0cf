"""lm-evaluation-harness runs on the shipped offline tasks: through the OpenAI-compatible server
(lm-eval's ``local-completions``) and on the transformers reference (lm-eval's own ``hf`` backend).

Both runs tokenize with the model directory's tokenizer and prepend its bos token, so the two scores
differ only by what the models compute.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASK_DIR = Path(__file__).resolve().parent / "tasks"
#: The shipped tasks and the metric each one reports (lm-eval's name ``<metric>,<filter>``).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "pydoc_mc": ("acc,none", "acc_norm,none"),
    "pydoc_gen": ("exact_match,first_word",),
}


def majority_baseline(task_file: Path = TASK_DIR / "pydoc_gen.jsonl") -> float:
    """Exact match of a model that always writes the most frequent target word of the generation task."""
    targets = [json.loads(line)["target"] for line in task_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Counter(targets).most_common(1)[0][1] / len(targets)


#: Chance level of each metric (what a model that knows nothing of the text scores: 1 in 4 choices; the
#: most frequent target word for generation).
CHANCE: dict[str, float] = {"pydoc_mc/acc": 0.25, "pydoc_mc/acc_norm": 0.25, "pydoc_gen/exact_match": majority_baseline()}


@dataclass(frozen=True)
class TaskScore:
    """One metric of one task: ``task/metric`` (e.g. ``pydoc_mc/acc``), its value and standard error."""

    task: str
    metric: str
    value: float
    stderr: float | None
    items: int

    @property
    def key(self) -> str:
        return f"{self.task}/{self.metric}"


def offline_environment() -> None:
    """No hub or dataset downloads (the tasks ship their data; the tokenizer is the model directory's)."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class EvalRun:
    """The scores of one lm-eval run and each item's value of each metric (``{key: {doc_id: value}}``)."""

    scores: list[TaskScore]
    per_item: dict[str, dict[int, float]]
    seconds: float

    def score(self, key: str) -> TaskScore:
        return next(s for s in self.scores if s.key == key)


def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASK_DIR), include_defaults=False)


def _evaluate(lm, tasks: list[str], limit: int | None) -> EvalRun:
    import lm_eval

    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager(), limit=limit,
                                  log_samples=True, bootstrap_iters=1000, random_seed=0, numpy_random_seed=0,
                                  torch_random_seed=0, fewshot_random_seed=0)
    return EvalRun(scores_from_results(out, tasks), per_item_from_results(out, tasks), time.perf_counter() - start)


def per_item_from_results(out: dict[str, Any], tasks: list[str]) -> dict[str, dict[int, float]]:
    """Each item's value of each shipped metric, from ``simple_evaluate``'s logged samples."""
    per_item: dict[str, dict[int, float]] = {}
    for task in tasks:
        for name in TASK_METRICS[task]:
            metric, _, filt = name.partition(",")
            per_item[f"{task}/{metric}"] = {
                int(sample["doc_id"]): float(sample[metric]) for sample in out["samples"][task] if sample["filter"] == filt
            }
    return per_item


def scores_from_results(out: dict[str, Any], tasks: list[str]) -> list[TaskScore]:
    """The shipped metrics out of ``simple_evaluate``'s result dict."""
    scores = []
    for task in tasks:
        row = out["results"][task]
        items = int(out.get("n-samples", {}).get(task, {}).get("effective", 0))
        for name in TASK_METRICS[task]:
            metric, _, filt = name.partition(",")
            stderr = row.get(f"{metric}_stderr,{filt}")
            scores.append(TaskScore(task, metric, float(row[name]),
                                    float(stderr) if isinstance(stderr, (int, float)) else None, items))
    return scores


def evaluate_server(base_url: str, model_name: str, tokenizer_dir: Path, tasks: list[str] | None = None,
                    limit: int | None = None, batch_size: int = 8, max_length: int = 1024) -> EvalRun:
    """lm-eval ``local-completions`` against ``{base_url}/v1/completions`` (token-id prompts; loglikelihood
    through ``echo`` + ``logprobs``, generation greedy)."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    offline_environment()
    lm = LocalCompletionsAPI(
        base_url=f"{base_url.rstrip('/')}/v1/completions", model=model_name, tokenizer=str(tokenizer_dir),
        tokenizer_backend="huggingface", tokenized_requests=True, add_bos_token=True, batch_size=batch_size,
        max_length=max_length, max_retries=1, timeout=600,
    )
    return _evaluate(lm, tasks or list(TASK_METRICS), limit)


def evaluate_reference(model_dir: Path, tasks: list[str] | None = None, limit: int | None = None,
                       batch_size: int = 8, max_length: int = 1024) -> EvalRun:
    """lm-eval's ``hf`` backend (HFLM) on the transformers reference model (fp32, CPU)."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from reference_models.reference import load_reference_model

    offline_environment()
    model = load_reference_model(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=batch_size, max_length=max_length,
              add_bos_token=True)
    return _evaluate(lm, tasks or list(TASK_METRICS), limit)
