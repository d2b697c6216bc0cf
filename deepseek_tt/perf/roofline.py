"""Roofline estimator for DeepSeek-V3 on Tenstorrent meshes.

From the model config, the dtype policy and the model's parallelization (docs/PARALLELISM.md) it lists
every op of one decode or prefill step with the bytes it moves (weights, KV cache, activations), its
FLOPs and its collective traffic, and turns them into a lower bound on step time with the figures of
:mod:`deepseek_tt.perf.hardware`:

- an op's DRAM time is the busiest chip's bytes over one chip's bandwidth: weights sharded over the
  whole mesh (routed experts, LM head) spread over every chip, weights sharded over mesh columns and
  replicated over rows (attention, dense MLP, shared expert) only over the columns;
- its compute time is its FLOPs over the mesh's cores at the math fidelity its weight dtype pairs with;
- a collective's time is the bytes one chip receives over its Ethernet links;
- the step bound is the sum over ops of max(DRAM, compute), plus the collectives (not overlapped).

``weights_only`` reproduces the usual back-of-envelope figure (every weight byte read once per step,
spread over all chips, nothing else counted), which is what docs/HARDWARE.md section 6 quotes.

    python -m deepseek_tt.perf.roofline --preset full --system TG --users 1
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pandas as pd

from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.perf.hardware import BYTES_PER_VALUE, CORE_TFLOPS, DRAM_BYTES_PER_CHIP, FIDELITY_FOR_DTYPE, SYSTEMS, System

ACTIVATION_BYTES = BYTES_PER_VALUE["bfloat16"]
#: rows of a tile: a [1, E] tensor in TILE layout is stored as [32, E]
TILE_ROWS = 32


@dataclass(frozen=True)
class Op:
    """One op of a step: what it reads and computes, and over how many chips its weights are split."""

    name: str
    layer: str
    weight_values: float = 0.0  # values of weight read this step
    weight_dtype: str = "bfloat16"
    shard: str = "mesh"  # "mesh": split over every chip; "cols": split over columns, replicated over rows
    kv_bytes: float = 0.0
    flops: float = 0.0
    collective_bytes_per_chip: float = 0.0  # bytes one chip receives over Ethernet

    @property
    def weight_bytes(self) -> float:
        return self.weight_values * BYTES_PER_VALUE[self.weight_dtype]


def expected_distinct_experts(num_experts: int, experts_per_token: int, tokens: int) -> float:
    """Experts touched by ``tokens`` tokens each picking ``experts_per_token`` of ``num_experts`` uniformly."""
    return num_experts * (1.0 - (1.0 - experts_per_token / num_experts) ** tokens)


def _ring_receive_bytes(total_bytes: float, chips: int) -> float:
    """Bytes one chip receives in a ring all-gather / reduce-scatter of ``total_bytes`` over ``chips``."""
    return 0.0 if chips <= 1 else total_bytes * (chips - 1) / chips


def step_ops(config, policy: DtypePolicy, mesh: tuple[int, int], tokens: int, context: int, mode: str) -> list[Op]:
    """Every op of one step. ``tokens``: users (decode) or prompt length (prefill); ``context``: KV length."""
    rows, cols = mesh
    hidden = config.hidden_size
    heads = config.num_attention_heads
    nope, rope, v_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
    q_lora, kv_lora = config.q_lora_rank, config.kv_lora_rank
    kvpe = kv_lora + rope
    act_row = hidden * ACTIVATION_BYTES
    tokens_per_row = tokens / rows if mode == "decode" else tokens
    gather = _ring_receive_bytes(tokens_per_row * act_row, cols)  # all_gather / reduce_scatter over columns

    def linear(name: str, layer: str, k: int, n: int, kind: str, shard: str, count: float = 1.0, used_tokens=tokens) -> Op:
        return Op(name, layer, weight_values=k * n * count, weight_dtype=getattr(policy, kind), shard=shard,
                  flops=2.0 * used_tokens * k * n * count)

    ops: list[Op] = [Op("embedding", "embedding", weight_values=tokens * hidden, weight_dtype=policy.embedding)]
    first_dense = config.first_k_dense_replace
    for index in range(config.num_hidden_layers):
        layer = f"layer{index}"
        ops += [
            Op("all_gather(attn in)", layer, collective_bytes_per_chip=gather),
            linear("wq_a", layer, hidden, q_lora, "attention", "cols"),
            linear("wq_b", layer, q_lora, heads * (nope + rope), "attention", "cols"),
            linear("wkv_a", layer, hidden, kvpe, "attention", "cols"),
            linear("wkv_b", layer, kv_lora, heads * (nope + v_dim), "attention", "cols"),
        ]
        if mode == "decode":  # absorbed attention over the latent cache: each user reads its whole context
            attention_flops = 2.0 * tokens * heads * context * (kvpe + kv_lora)
            kv_read = tokens * context * kvpe * BYTES_PER_VALUE[policy.kv_cache] / cols  # a row's users over its columns
        else:
            attention_flops = 2.0 * heads * (tokens * context / 2) * (nope + rope + v_dim)
            kv_read = tokens * kvpe * BYTES_PER_VALUE[policy.kv_cache]  # written once
        ops += [
            Op("attention", layer, kv_bytes=kv_read, flops=attention_flops),
            linear("wo", layer, heads * v_dim, hidden, "attention", "cols"),
            Op("reduce_scatter(attn out)", layer, collective_bytes_per_chip=gather),
        ]
        if index < first_dense:
            inter = config.intermediate_size
            ops += [
                Op("all_gather(mlp in)", layer, collective_bytes_per_chip=gather),
                linear("w1+w3", layer, hidden, inter, "dense_mlp", "cols", count=2),
                linear("w2", layer, inter, hidden, "dense_mlp", "cols"),
                Op("reduce_scatter(mlp out)", layer, collective_bytes_per_chip=gather),
            ]
            continue
        experts, top_k = config.n_routed_experts, config.num_experts_per_tok
        moe_inter = config.moe_intermediate_size
        touched = expected_distinct_experts(experts, top_k, tokens)
        dispatch = tokens_per_row * top_k * act_row * (rows * cols - 1) / (rows * cols)
        ops += [
            Op("all_gather(moe in)", layer, collective_bytes_per_chip=gather),
            linear("gate", layer, hidden, experts, "router", "cols"),
            linear("shared w1+w3", layer, hidden, moe_inter * config.n_shared_experts, "shared_expert", "cols", count=2),
            linear("shared w2", layer, moe_inter * config.n_shared_experts, hidden, "shared_expert", "cols"),
            Op("all_to_all_dispatch", layer, collective_bytes_per_chip=dispatch / (rows * cols) * rows),
            Op("experts w1+w3", layer, weight_values=2 * hidden * moe_inter * touched,
               weight_dtype=policy.expert_gate_up, shard="mesh", flops=2.0 * tokens * top_k * 2 * hidden * moe_inter),
            Op("experts w2", layer, weight_values=moe_inter * hidden * touched,
               weight_dtype=policy.expert_down, shard="mesh", flops=2.0 * tokens * top_k * moe_inter * hidden),
            Op("all_to_all_combine", layer, collective_bytes_per_chip=dispatch / (rows * cols) * rows),
            Op("reduce_scatter(moe out)", layer, collective_bytes_per_chip=gather),
        ]
    lm_tokens = tokens if mode == "decode" else 1  # prefill only needs the last position's logits
    ops.append(linear("lm_head", "lm_head", hidden, config.vocab_size, "lm_head", "mesh", used_tokens=lm_tokens))
    return ops


def op_table(ops: list[Op], system: System) -> pd.DataFrame:
    """Per-op bytes, FLOPs and the DRAM / compute / Ethernet time bounds (seconds)."""
    rows, cols = system.mesh
    chip_bw = system.dram_gb_s_per_chip * 1e9
    eth_bw = max(system.links_per_neighbour, 1) * system.eth_gb_s_per_link * 1e9
    records = []
    for op in ops:
        spread = rows * cols if op.shard == "mesh" else cols
        dram_bytes_busiest_chip = op.weight_bytes / spread + op.kv_bytes
        fidelity = FIDELITY_FOR_DTYPE[op.weight_dtype]
        mesh_flops = system.num_chips * system.cores_per_chip * CORE_TFLOPS[fidelity] * 1e12
        t_dram = dram_bytes_busiest_chip / chip_bw
        t_compute = op.flops / mesh_flops
        t_comm = op.collective_bytes_per_chip / eth_bw if system.num_chips > 1 else 0.0
        records.append({
            "op": op.name, "layer": op.layer, "weight_dtype": op.weight_dtype, "weight_bytes": op.weight_bytes,
            "kv_bytes": op.kv_bytes, "flops": op.flops, "collective_bytes": op.collective_bytes_per_chip,
            "t_dram_s": t_dram, "t_compute_s": t_compute, "t_comm_s": t_comm,
            "t_bound_s": max(t_dram, t_compute) + t_comm,
        })
    return pd.DataFrame.from_records(records)


@dataclass(frozen=True)
class Roofline:
    system: str
    mode: str
    users: int
    step_time_s: float  # per-op bound summed over the step
    weights_only_step_time_s: float  # every weight byte once, spread over all chips, nothing else
    table: pd.DataFrame

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1.0 / self.step_time_s

    @property
    def weights_only_tokens_per_s_per_user(self) -> float:
        return 1.0 / self.weights_only_step_time_s

    @property
    def tokens_per_s(self) -> float:
        return self.users / self.step_time_s


def estimate(
    config,
    system: str | System = "TG",
    policy: str | DtypePolicy | None = "default",
    mode: str = "decode",
    users: int = 1,
    context: int = 1024,
    prefill_len: int = 1024,
) -> Roofline:
    """The roofline of one decode step (``users`` users at ``context``) or one prefill of ``prefill_len``."""
    if mode not in ("decode", "prefill"):
        raise ValueError(f"mode must be 'decode' or 'prefill', not {mode!r}")
    resolved = SYSTEMS[system] if isinstance(system, str) else system
    dtype_policy = get_dtype_policy(policy)
    tokens = users if mode == "decode" else prefill_len
    ops = step_ops(config, dtype_policy, resolved.mesh, tokens, context if mode == "decode" else prefill_len, mode)
    table = op_table(ops, resolved)
    weights_only = table["weight_bytes"].sum() / resolved.dram_bytes_per_s
    return Roofline(resolved.name, mode, users, float(table["t_bound_s"].sum()), float(weights_only), table)


def stage_layers(num_layers: int, rows: int) -> list[range]:
    """The pipelined model's layer split (``modules/pipeline.assign_stages``)."""
    from deepseek_tt.modules.pipeline import assign_stages

    return assign_stages(num_layers, rows)


def stored_weight_bytes_per_device(config, policy: str | DtypePolicy | None, mesh: tuple[int, int], parallelism: str = "bp") -> list[float]:
    """Weight bytes each device of a mesh row stores (one value per row; the columns of a row are equal), as
    the model lays them out (docs/PARALLELISM.md; ``runtime/memory.py`` measures the same on loaded tensors).

    Split over the columns: attention (``wq_kv_a``, ``wq_b``, ``wkv_b1``, ``wo``, the prefill copy of
    ``wkv_b2``), dense MLP, shared expert, embedding, LM head, the input / post-attention / final norms.
    Whole on every device: the decode copy of ``wkv_b2``, the q / kv norms, the router (a float32 router as
    TF32 head + remainder, two copies) and its bias (one tile row). ``bp``: all of it replicated over the
    rows, the routed experts split over every chip. ``pp``: row r holds only its stage's layers (plus the
    embedding on row 0, the final norm and LM head on the last), its routed experts split over the row's chips.
    """
    from deepseek_tt.modules.moe_gate import MoEGate

    if parallelism not in ("bp", "pp"):
        raise ValueError(f"parallelism must be 'bp' or 'pp', not {parallelism!r}")
    p = get_dtype_policy(policy)
    rows, cols = mesh
    b = lambda kind: BYTES_PER_VALUE[getattr(p, kind)]  # noqa: E731
    hidden, heads, experts = config.hidden_size, config.num_attention_heads, config.n_routed_experts
    nope, rope, v_dim, kv_lora = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim, config.kv_lora_rank
    wkv_b2 = kv_lora * heads * v_dim * b("attention")
    attention_split = (hidden * (config.q_lora_rank + kv_lora + rope) + config.q_lora_rank * heads * (nope + rope)
                       + kv_lora * heads * nope + heads * v_dim * hidden) * b("attention") + wkv_b2
    attention_whole = wkv_b2 + (config.q_lora_rank + kv_lora) * b("norm")
    block_norms = 2 * hidden * b("norm")
    moe_inter = config.moe_intermediate_size
    router_copies = 2 if MoEGate.split_router(p) else 1
    router = (router_copies * hidden + TILE_ROWS) * experts * b("router")

    def layer_bytes(index: int) -> tuple[float, float, float]:
        """(bytes split over the columns, bytes whole on every device, routed-expert bytes) of layer ``index``."""
        split = attention_split + block_norms
        if index < config.first_k_dense_replace:
            return split + 3 * hidden * config.intermediate_size * b("dense_mlp"), attention_whole, 0.0
        split += 3 * hidden * moe_inter * config.n_shared_experts * b("shared_expert")
        routed = experts * hidden * moe_inter * (2 * b("expert_gate_up") + b("expert_down"))
        return split, attention_whole + router, routed

    def ends(first: bool, last: bool) -> float:
        """Embedding (first row), final norm and LM head (last row), split over the columns."""
        return config.vocab_size * hidden * ((b("embedding") if first else 0.0) + (b("lm_head") if last else 0.0)) + (hidden * b("norm") if last else 0.0)

    layers = [layer_bytes(i) for i in range(config.num_hidden_layers)]
    if parallelism == "bp":
        per = (sum(s for s, _, _ in layers) + ends(True, True)) / cols + sum(w for _, w, _ in layers) + sum(e for _, _, e in layers) / (rows * cols)
        return [per] * rows
    out = []
    for r, stage in enumerate(stage_layers(config.num_hidden_layers, rows)):
        split = sum(layers[i][0] + layers[i][2] for i in stage) + ends(r == 0, r == rows - 1)
        out.append(split / cols + sum(layers[i][1] for i in stage))
    return out


def stored_kv_cache_bytes_per_device(config, policy: str | DtypePolicy | None, mesh: tuple[int, int], parallelism: str = "bp",
                                     max_seq_len: int = 4096, users_per_row: int = TILE_ROWS) -> list[float]:
    """KV-cache bytes each device of a mesh row stores (one value per row), as the model allocates them
    (``runtime/memory.py`` measures the same): per layer one paged KVPE cache of ``kv_cache.model_paged_config``
    pages, ``[pages, 1, 32, kv_lora + rope]`` tile-padded, in the policy's KV dtype. ``bp``: every layer on every
    device; ``pp``: row r its stage's layers, each with the pages of every row's users (its micro-batches)."""
    from deepseek_tt.modules import kv_cache
    from deepseek_tt.modules.pipeline import stage_paged_config

    if parallelism not in ("bp", "pp"):
        raise ValueError(f"parallelism must be 'bp' or 'pp', not {parallelism!r}")
    rows, cols = mesh
    paged = kv_cache.model_paged_config(max_seq_len, users_per_row, cols)
    kvpe = -(-(config.kv_lora_rank + config.qk_rope_head_dim) // TILE_ROWS) * TILE_ROWS
    kv_bytes = BYTES_PER_VALUE[get_dtype_policy(policy).kv_cache]

    def layer_bytes(pages: kv_cache.PagedConfig) -> float:
        return pages.max_num_blocks * pages.block_size * kvpe * kv_bytes

    if parallelism == "bp":
        return [config.num_hidden_layers * layer_bytes(paged)] * rows
    stage_pages = stage_paged_config(paged, rows)
    return [len(stage) * layer_bytes(stage_pages) for stage in stage_layers(config.num_hidden_layers, rows)]


@dataclass(frozen=True)
class PipelineRoofline:
    """Decode bound of the row-pipelined model: R stages of 1 x C chips, R micro-batches of U users in flight."""

    system: str
    users: int
    stage_time_s: list[float]  # one micro-batch through each stage (bound), including the hand-off to the next row
    step_time_s: float  # every user one token: R micro-batches through the slowest stage (steady state, no bubble)
    weight_bytes_per_device_pp: float  # the fullest row
    weight_bytes_per_device_bp: float

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1.0 / self.step_time_s

    @property
    def tokens_per_s(self) -> float:
        return self.users / self.step_time_s

    @property
    def fill_bubble_fraction(self) -> float:
        """Idle share of stage-ticks while a batch of R micro-batches fills and drains the pipeline once."""
        rows = len(self.stage_time_s)
        return (rows - 1) / (2 * rows - 1)


def estimate_pipeline(config, system: str | System = "TG", policy: str | DtypePolicy | None = "default", users: int | None = None,
                      context: int = 1024) -> PipelineRoofline:
    """The pp decode bound: each stage's ops on its 1 x C row for one micro-batch (users / R), plus the
    hidden states' hand-off to the next row; the step is R ticks of the slowest stage."""
    from dataclasses import replace

    resolved = SYSTEMS[system] if isinstance(system, str) else system
    rows, cols = resolved.mesh
    users = 32 * rows if users is None else int(users)
    micro = users / rows
    dtype_policy = get_dtype_policy(policy)
    row_system = replace(resolved, name=f"{resolved.name} row", mesh=(1, cols))
    table = op_table(step_ops(config, dtype_policy, (1, cols), int(round(micro)), context, "decode"), row_system)
    eth_bw = max(resolved.links_per_neighbour, 1) * resolved.eth_gb_s_per_link * 1e9
    hand_off = micro * config.hidden_size * ACTIVATION_BYTES / cols / eth_bw
    times = []
    for r, stage in enumerate(stage_layers(config.num_hidden_layers, rows)):
        names = {f"layer{i}" for i in stage} | ({"embedding"} if r == 0 else set()) | ({"lm_head"} if r == rows - 1 else set())
        t = float(table[table["layer"].isin(names)]["t_bound_s"].sum())
        times.append(t + (hand_off if r < rows - 1 else 0.0))
    return PipelineRoofline(
        resolved.name, users, times, rows * max(times),
        max(stored_weight_bytes_per_device(config, dtype_policy, resolved.mesh, "pp")),
        max(stored_weight_bytes_per_device(config, dtype_policy, resolved.mesh, "bp")),
    )


def summary(config, policy: str = "default", context: int = 1024) -> pd.DataFrame:
    """Decode bounds for every system at batch 1 and 32 users per mesh row."""
    records = []
    for key, system in SYSTEMS.items():
        for users in sorted({1, 32 * system.mesh[0]}):
            roof = estimate(config, key, policy, "decode", users=users, context=context)
            records.append({
                "system": system.name, "users": users, "policy": policy,
                "step_bound_ms": roof.step_time_s * 1e3, "t/s/u_bound": roof.tokens_per_s_per_user,
                "t/s_bound": roof.tokens_per_s, "weights_only_t/s/u": roof.weights_only_tokens_per_s_per_user,
            })
    return pd.DataFrame.from_records(records)


def pipeline_summary(config, policy: str = "default", context: int = 1024) -> pd.DataFrame:
    """pp against bp on every multi-row system whose rows the model's layers fill (32 users per row)."""
    records = []
    for key, system in SYSTEMS.items():
        rows = system.mesh[0]
        if rows < 2 or config.num_hidden_layers < rows:
            continue
        pp = estimate_pipeline(config, key, policy, context=context)
        bp = estimate(config, key, policy, "decode", users=pp.users, context=context)
        records.append({
            "system": system.name, "users": pp.users, "policy": policy,
            "bp_weight_GB/chip": pp.weight_bytes_per_device_bp / 1e9, "pp_weight_GB/chip": pp.weight_bytes_per_device_pp / 1e9,
            "bp_t/s/u_bound": bp.tokens_per_s_per_user, "pp_t/s/u_bound": pp.tokens_per_s_per_user,
            "pp_slowest_stage_ms": max(pp.stage_time_s) * 1e3,
        })
    return pd.DataFrame.from_records(records)


def memory_summary(config, policy: str = "default", context: int = 1024) -> pd.DataFrame:
    """Per system and generator: the fullest chip's weight and KV-cache bytes (32 users per mesh row, ``context``
    tokens each) in GiB, and whether they fit its DRAM (``hardware.DRAM_BYTES_PER_CHIP``; activations and program
    buffers come on top). The check ``TtModel.load`` and ``PipelinedTtModel.load`` make before converting anything."""
    capacity = DRAM_BYTES_PER_CHIP["WORMHOLE_B0"]
    records = []
    for system in SYSTEMS.values():
        for parallelism in ("bp", "pp") if system.mesh[0] > 1 and config.num_hidden_layers >= system.mesh[0] else ("bp",):
            weights = stored_weight_bytes_per_device(config, policy, system.mesh, parallelism)
            kv = stored_kv_cache_bytes_per_device(config, policy, system.mesh, parallelism, context)
            row = max(range(len(weights)), key=lambda r: weights[r] + kv[r])
            records.append({
                "system": system.name, "generator": parallelism, "policy": policy, "context": context,
                "weights_GiB/chip": weights[row] / 2**30, "kv_cache_GiB/chip": kv[row] / 2**30,
                "total_GiB/chip": (weights[row] + kv[row]) / 2**30, "fits": weights[row] + kv[row] <= capacity,
            })
    return pd.DataFrame.from_records(records)


def main(argv: list[str] | None = None) -> int:
    from reference_models.presets import PRESET_NAMES, get_preset

    parser = argparse.ArgumentParser(prog="python -m deepseek_tt.perf.roofline", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=PRESET_NAMES)
    parser.add_argument("--policy", default="default")
    parser.add_argument("--context", type=int, default=1024)
    args = parser.parse_args(argv)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary(get_preset(args.preset), args.policy, args.context).round(2).to_string(index=False))
        pp = pipeline_summary(get_preset(args.preset), args.policy, args.context)
        if len(pp):
            print("\npipeline parallel (--generator pp: layers split over the mesh rows) against batch parallel:")
            print(pp.round(3).to_string(index=False))
        memory = memory_summary(get_preset(args.preset), args.policy, args.context)
        print(f"\ndevice memory (fullest chip; {DRAM_BYTES_PER_CHIP['WORMHOLE_B0'] / 2**30:.0f} GiB of DRAM a Wormhole chip):")
        print(memory.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
