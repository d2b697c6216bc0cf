"""Generation statistics (DESIGN.md section 7) and the recorder the generators fill in.

Definitions (every rate is ``None`` when there is nothing to measure):

- prefill t/s = prompt tokens / summed prefill time; TTFT = mean prefill time per prompt.
- decode t/s/u = decode steps after the first (compile) step / their summed time, i.e. the tokens one
  user receives per second in steady state (the first generated token comes from prefill).
- decode t/s = tokens produced by those steps (active users per step, summed) / the same time; with
  every user active to the end this is decode t/s/u x users.
- total runtime = wall time of the whole ``generate`` call.
- pipeline (``--generator pp`` on the row-pipelined model only): stages, micro-batches, layers per
  stage, per-stage busy time, and the bubble fraction = idle share of stage-ticks when every tick lasts
  as long as its slowest stage (as the rows would run concurrently on hardware).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GenerationStatistics:
    """The statistics block of a run (field names are the JSON keys of docs/DEMO_OUTPUT.md)."""

    num_users: int
    prompt_tokens: int
    new_tokens: int
    prefill_time_s: float
    prefill_tokens_per_s: float | None
    ttft_s: float | None
    decode_steps: int
    decode_time_s: float
    compile_step_time_s: float | None
    decode_tokens_per_s_per_user: float | None
    decode_tokens_per_s: float | None
    total_runtime_s: float
    pipeline: dict | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        out = asdict(self)
        if out["pipeline"] is None:
            del out["pipeline"]
        return out

    def table(self) -> str:
        """A two-column summary table for the console."""
        rows = [
            ("users", f"{self.num_users}"),
            ("prompt tokens", f"{self.prompt_tokens}"),
            ("new tokens", f"{self.new_tokens}"),
            ("prefill time", _fmt(self.prefill_time_s, "s")),
            ("prefill t/s", _fmt(self.prefill_tokens_per_s, "")),
            ("TTFT (mean)", _fmt(self.ttft_s, "s")),
            ("decode steps", f"{self.decode_steps}"),
            ("compile step", _fmt(self.compile_step_time_s, "s")),
            ("decode t/s/u", _fmt(self.decode_tokens_per_s_per_user, "")),
            ("decode t/s", _fmt(self.decode_tokens_per_s, "")),
            ("total runtime", _fmt(self.total_runtime_s, "s")),
        ]
        if self.pipeline is not None:
            rows.append(("pipeline stages", f"{self.pipeline['stages']}"))
            rows += [(f"stage {i} time", _fmt(t, "s")) for i, t in enumerate(self.pipeline["stage_time_s"])]
            rows.append(("bubble fraction", _fmt(self.pipeline["bubble_fraction"], "")))
        width = max(len(name) for name, _ in rows)
        line = "-" * (width + 18)
        body = "\n".join(f"{name:<{width}}  {value:>14}" for name, value in rows)
        return f"{line}\n{body}\n{line}"


def _fmt(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.4f}{(' ' + unit) if unit else ''}"


def _rate(count: float, seconds: float) -> float | None:
    return count / seconds if count > 0 and seconds > 0 else None


@dataclass
class StatisticsRecorder:
    """Collects prefill and decode timings during a run; ``finish()`` gives the statistics."""

    start: float = field(default_factory=time.perf_counter)
    prefill_times: list[float] = field(default_factory=list)
    prompt_lengths: list[int] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    step_tokens: list[int] = field(default_factory=list)
    new_tokens: int = 0
    pipeline: dict | None = None

    def add_prefill(self, seconds: float, prompt_len: int) -> None:
        self.prefill_times.append(seconds)
        self.prompt_lengths.append(prompt_len)

    def add_decode_step(self, seconds: float, active_users: int) -> None:
        self.step_times.append(seconds)
        self.step_tokens.append(active_users)

    def add_new_tokens(self, count: int) -> None:
        self.new_tokens += count

    def finish(self, num_users: int) -> GenerationStatistics:
        prefill_time = sum(self.prefill_times)
        steady_times, steady_tokens = self.step_times[1:], self.step_tokens[1:]
        steady_time = sum(steady_times)
        return GenerationStatistics(
            num_users=num_users,
            prompt_tokens=sum(self.prompt_lengths),
            new_tokens=self.new_tokens,
            prefill_time_s=prefill_time,
            prefill_tokens_per_s=_rate(sum(self.prompt_lengths), prefill_time),
            ttft_s=prefill_time / len(self.prefill_times) if self.prefill_times else None,
            decode_steps=len(self.step_times),
            decode_time_s=sum(self.step_times),
            compile_step_time_s=self.step_times[0] if self.step_times else None,
            decode_tokens_per_s_per_user=_rate(len(steady_times), steady_time),
            decode_tokens_per_s=_rate(sum(steady_tokens), steady_time),
            total_runtime_s=time.perf_counter() - self.start,
            pipeline=self.pipeline,
        )


__all__ = ["GenerationStatistics", "StatisticsRecorder"]
