"""Compare the lm-eval scores of the served TT-NN model with the transformers reference's, and turn the
comparison into result rows (``reports.store`` format) for the regression report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepseek_tt.evaluation.harness import CHANCE, EvalRun

#: Largest |server - reference| allowed per metric (a fraction of the task's items). Calibration: the
#: served TT-NN model (bf16 / bfp8 on the emulator) and the fp32 reference gave the same outcome on every
#: one of the 100 items (difference 0 on each metric); with 0 changes in 100 the 95% upper bound of the
#: per-item change rate is 3% (rule of three), and a score moves by at most the fraction of items that
#: change, so 0.05 (3 of the 60 multiple-choice items, 2 of the 40 generation items) keeps a margin over
#: that bound while a numerics defect that moves a score by 5 points still fails.
TOLERANCE: dict[str, float] = {"pydoc_mc/acc": 0.05, "pydoc_mc/acc_norm": 0.05, "pydoc_gen/exact_match": 0.05}
#: Both runs must score at least this much above chance (a broken model lands at chance).
MIN_ABOVE_CHANCE: dict[str, float] = {"pydoc_mc/acc": 0.25, "pydoc_mc/acc_norm": 0.25, "pydoc_gen/exact_match": 0.10}


@dataclass(frozen=True)
class MetricAgreement:
    key: str
    server: float
    reference: float
    items: int
    changed_items: int  # items whose value differs between the two runs
    tolerance: float
    chance: float

    @property
    def difference(self) -> float:
        return self.server - self.reference

    @property
    def agrees(self) -> bool:
        return abs(self.difference) <= self.tolerance + 1e-12

    @property
    def metric_name(self) -> str:
        """``lm_eval_<task>_<metric>``."""
        return "lm_eval_" + self.key.replace("/", "_")


def compare_runs(server: EvalRun, reference: EvalRun) -> list[MetricAgreement]:
    out = []
    for score in server.scores:
        ref = reference.score(score.key)
        a, b = server.per_item[score.key], reference.per_item[score.key]
        changed = sum(a[i] != b.get(i) for i in a)
        out.append(MetricAgreement(score.key, score.value, ref.value, score.items, changed,
                                   TOLERANCE[score.key], CHANCE[score.key]))
    return out


def format_table(rows: list[MetricAgreement]) -> str:
    lines = [f"{'metric':28} {'server (TT-NN)':>14} {'reference':>10} {'difference':>10} {'tolerance':>9} "
             f"{'changed items':>13} {'chance':>6}"]
    for r in rows:
        lines.append(f"{r.key:28} {r.server:14.4f} {r.reference:10.4f} {r.difference:+10.4f} {r.tolerance:9.4f} "
                     f"{r.changed_items:>6}/{r.items:<6} {r.chance:6.3f}")
    return "\n".join(lines)


def result_fields(rows: list[MetricAgreement]) -> list[dict[str, Any]]:
    """The ``record_result`` / ``ResultRow`` fields of each comparison: the server's score (the TT-NN
    model's accuracy figure), the reference's, and their absolute difference against the tolerance."""
    fields = []
    for r in rows:
        common = {"module": "lm_eval", "batch": None, "seq_len": None, "mesh": "1x1"}
        extra = {"items": r.items, "chance": r.chance, "changed_items": r.changed_items}
        fields.append({**common, "mode": "server", "metric": r.metric_name, "value": r.server,
                       "threshold": r.chance + MIN_ABOVE_CHANCE[r.key], "extra": {**extra, "reference": r.reference}})
        fields.append({**common, "mode": "reference", "metric": f"{r.metric_name}_reference", "value": r.reference,
                       "threshold": r.chance + MIN_ABOVE_CHANCE[r.key], "extra": extra})
        fields.append({**common, "mode": "agreement", "metric": f"{r.metric_name}_abs_diff", "value": abs(r.difference),
                       "threshold": r.tolerance, "higher_is_better": False,
                       "extra": {**extra, "server": r.server, "reference": r.reference}})
    return fields
