"""Pipeline-parallel generator (``--generator pp``).

Over the row-pipelined model (``runtime/pipelined_model.PipelinedTtModel``: decoder layers split into
stages over the mesh rows), users are split into micro-batches (micro-batch m = the U users of slots
``m*U ..``) and work flows through the stages tick by tick: in each tick stage r runs the item stage r-1
ran in the previous tick, so on hardware every row works on a different item at once. Prefill: each
user's prompt is one item, users entering the pipeline one per tick. Decode: each micro-batch's step is
one item; a micro-batch re-enters stage 0 the tick after its logits leave the last stage, so with R
micro-batches in flight no stage idles in the steady state. The emulator runs a tick's stages one after
another; the statistics add each stage's busy time and the bubble fraction (idle share of stage-ticks
when a tick lasts as long as its slowest stage). A decode step (for the statistics) is one token for
every active user: its time is the summed time of the micro-batch items of that step.

Over a model without stages (the transformers reference runtime) the generator interleaves users:
each tick prefills the next waiting user and runs one decode step of the users already running.
Tracing is not supported with pp (as in the seed README).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from deepseek_tt.generator.base import DecoderModel, GenerationOutput, GenerationRun, TokenCallback, UserState, decode_inputs
from deepseek_tt.generator.sampling import SamplingParams


def is_pipelined(model: DecoderModel) -> bool:
    """Whether ``model`` exposes pipeline stages (``num_stages``, ``start_prefill``/``start_decode``, ``run_stage``)."""
    return all(hasattr(model, name) for name in ("num_stages", "start_prefill", "start_decode", "run_stage"))


def spread_over_micro_batches(wave: list[UserState], micro_batches: int, users_per_micro_batch: int) -> None:
    """Deal the wave's users round-robin over the micro-batches (user k -> micro-batch k % M), so that a
    wave smaller than the batch still keeps every stage busy."""
    for k, user in enumerate(wave):
        user.slot = (k % micro_batches) * users_per_micro_batch + k // micro_batches


class PipelineSchedule:
    """Runs items through the model's stages tick by tick and keeps the stage timings."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.stages = int(model.num_stages)
        self.stage_busy_s = [0.0] * self.stages
        self.ticks = 0
        self.pipelined_s = 0.0  # sum over ticks of the slowest stage's time

    def run(self, feed: Callable[[], Any], on_done: Callable[[Any], None]) -> None:
        """``feed()`` gives the next item for stage 0 (or None); ``on_done(item)`` gets each item whose
        last stage ran (at the end of that tick, so its follow-up can enter the next tick)."""
        pipe: list[Any] = [None] * self.stages
        while True:
            pipe = [feed()] + pipe[:-1]
            if all(item is None for item in pipe):
                return
            times = [0.0] * self.stages
            for stage, item in enumerate(pipe):
                if item is None:
                    continue
                t0 = time.perf_counter()
                self.model.run_stage(item, stage)
                times[stage] = time.perf_counter() - t0
                item.stage_seconds.append(times[stage])
                self.stage_busy_s[stage] += times[stage]
            self.ticks += 1
            self.pipelined_s += max(times)
            if pipe[-1] is not None:
                on_done(pipe[-1])
                pipe[-1] = None

    @property
    def bubble_fraction(self) -> float | None:
        if self.pipelined_s <= 0:
            return None
        return 1.0 - sum(self.stage_busy_s) / (self.stages * self.pipelined_s)

    def report(self, phases: dict[str, "PipelineSchedule"], model: Any) -> dict[str, Any]:
        return {
            "stages": self.stages,
            "micro_batches": int(model.num_micro_batches),
            "users_per_micro_batch": int(model.users_per_row),
            "layers_per_stage": [[r.start, r.stop - 1] for r in model.stage_layers],
            "stage_time_s": [sum(p.stage_busy_s[i] for p in phases.values()) for i in range(self.stages)],
            "ticks": sum(p.ticks for p in phases.values()),
            "pipelined_time_s": sum(p.pipelined_s for p in phases.values()),
            "bubble_fraction": _combined_bubble(list(phases.values())),
            **{f"{name}_bubble_fraction": p.bubble_fraction for name, p in phases.items()},
        }


def _combined_bubble(schedules: list[PipelineSchedule]) -> float | None:
    total = sum(s.pipelined_s for s in schedules)
    if total <= 0:
        return None
    return 1.0 - sum(sum(s.stage_busy_s) for s in schedules) / (schedules[0].stages * total)


class PipelineParallelGenerator:
    """Micro-batches through the pipeline stages (or, without stages, users interleaved)."""

    name = "pp"

    def __init__(self, model: DecoderModel, *, enable_trace: bool = False, progress: bool = False) -> None:
        if enable_trace:
            raise ValueError("--enable-trace is not supported with --generator pp (use --generator bp)")
        self.model = model
        self.progress = progress

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int = 32,
        sampling: SamplingParams = SamplingParams(),
        eos_token_id: int | Iterable[int] | None = None,
        on_token: TokenCallback | None = None,
    ) -> GenerationOutput:
        """Generate up to ``max_new_tokens`` tokens for every prompt (lists of token ids)."""
        run = GenerationRun(self.model, self.name, prompts, max_new_tokens, sampling, eos_token_id, on_token, self.progress)
        if is_pipelined(self.model):
            return self._generate_pipelined(run)
        for wave in run.waves():
            waiting = deque(wave)
            running: list[UserState] = []
            while waiting or any(not u.done for u in running):
                if waiting:
                    user = waiting.popleft()
                    run.prefill(user)
                    running.append(user)
                active = [u for u in running if not u.done]
                if not active:
                    continue
                tokens, positions = decode_inputs(active, self.model.max_batch_size)
                t0 = time.perf_counter()
                logits = self.model.decode(tokens, positions)
                run.decoded(active, logits, time.perf_counter() - t0)
        return run.output()

    def _generate_pipelined(self, run: GenerationRun) -> GenerationOutput:
        model = self.model
        phases = {"prefill": PipelineSchedule(model), "decode": PipelineSchedule(model)}
        for wave in run.waves():
            spread_over_micro_batches(wave, int(model.num_micro_batches), int(model.users_per_row))
            self._prefill_wave(wave, run, phases["prefill"])
            self._decode_wave(wave, run, phases["decode"])
        run.recorder.pipeline = phases["prefill"].report(phases, model)
        return run.output()

    def _prefill_wave(self, wave: list[UserState], run: GenerationRun, schedule: PipelineSchedule) -> None:
        """Users' prompts enter stage 0 one per tick."""
        waiting = deque(wave)
        owner: dict[int, UserState] = {}

        def feed() -> Any:
            if not waiting:
                return None
            user = waiting.popleft()
            item = self.model.start_prefill(torch.tensor(user.prompt, dtype=torch.long), user.slot)
            owner[id(item)] = user
            return item

        def done(item: Any) -> None:
            user = owner.pop(id(item))
            run.recorder.add_prefill(sum(item.stage_seconds), len(user.prompt))
            run.accept(user, item.logits[-1])

        schedule.run(feed, done)

    def _decode_wave(self, wave: list[UserState], run: GenerationRun, schedule: PipelineSchedule) -> None:
        """Micro-batch steps through the stages; a micro-batch re-enters as soon as its logits are out."""
        u = self.model.users_per_row
        groups: dict[int, list[UserState]] = {}
        for user in wave:
            groups.setdefault(user.slot // u, []).append(user)
        ready = deque(m for m in sorted(groups) if any(not x.done for x in groups[m]))
        step_of = {m: 0 for m in groups}
        steps: dict[int, list[float]] = {}
        pending: dict[int, tuple[int, int, list[UserState]]] = {}

        def feed() -> Any:
            if not ready:
                return None
            m = ready.popleft()
            active = [x for x in groups[m] if not x.done]
            tokens, positions = decode_inputs(active, self.model.max_batch_size)
            item = self.model.start_decode(m, tokens[m * u : (m + 1) * u], positions[m * u : (m + 1) * u])
            pending[id(item)] = (m, step_of[m], active)
            step_of[m] += 1
            return item

        def done(item: Any) -> None:
            m, step, active = pending.pop(id(item))
            entry = steps.setdefault(step, [0.0, 0])
            entry[0] += sum(item.stage_seconds)
            entry[1] += len(active)
            for user in active:
                run.accept(user, item.logits[user.slot - m * u])
            if any(not x.done for x in groups[m]):
                ready.append(m)

        schedule.run(feed, done)
        for step in sorted(steps):
            run.recorder.add_decode_step(steps[step][0], int(steps[step][1]))


__all__ = ["PipelineParallelGenerator", "PipelineSchedule", "is_pipelined"]
