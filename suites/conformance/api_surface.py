"""The ttnn API surface: which names the model needs, their signatures, and how the emulator compares.

Signatures are described as plain JSON-able data so that the real wheel's (recorded by
``make_golden_vectors`` into ``fixtures/golden/ttnn_api.json``) can be checked on machines without it.
A description is ``{"kind": "function" | "class" | "enum" | "value", "overloads": [[param, ...], ...],
"members": [...]}`` with ``param = {"name", "kind", "has_default", "default"}``; ``default`` is the
value when it is a JSON literal, else its ``repr``.
"""

from __future__ import annotations

import enum
import inspect
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

#: ttnn names the DeepSeek-V3 model needs, beyond those found in the model code.
MODEL_API_NAMES = sorted(
    """
    from_torch to_torch to_device from_device deallocate dump_tensor load_tensor as_tensor
    open_mesh_device close_mesh_device MeshShape MeshDevice create_sharded_memory_config
    init_device_compute_kernel_config WormholeComputeKernelConfig MathFidelity
    ShardTensorToMesh ShardTensor2dMesh ReplicateTensorToMesh ConcatMeshToTensor ConcatMesh2dToTensor
    create_mesh_mapper create_mesh_composer MeshMapperConfig MeshComposerConfig PlacementShard PlacementReplicate
    DataType Layout bfloat16 float32 bfloat8_b bfloat4_b uint32 int32 uint16 ROW_MAJOR_LAYOUT TILE_LAYOUT TILE_SIZE
    MemoryConfig TensorMemoryLayout BufferType DRAM_MEMORY_CONFIG L1_MEMORY_CONFIG ShardSpec ShardOrientation
    ShardStrategy CoreCoord CoreRange CoreRangeSet CoreGrid Shape Topology UnaryOpType UnaryWithParam
    MatmulMultiCoreReuseMultiCast1DProgramConfig MatmulMultiCoreReuseMultiCastProgramConfig
    MatmulMultiCoreReuseMultiCastDRAMShardedProgramConfig MatmulMultiCoreReuseProgramConfig SDPAProgramConfig
    linear matmul add sub mul multiply subtract silu sigmoid exp softmax rms_norm rms_norm_pre_all_gather
    rms_norm_post_all_gather embedding topk argmax sum mean concat slice reshape permute transpose pad repeat
    gather scatter typecast to_layout to_memory_config
    experimental.rotary_embedding_llama experimental.paged_update_cache experimental.paged_fill_cache
    transformer.scaled_dot_product_attention transformer.paged_flash_multi_latent_attention_decode
    transformer.flash_mla_prefill
    all_gather reduce_scatter all_reduce all_to_all_dispatch all_to_all_combine point_to_point
    begin_trace_capture end_trace_capture execute_trace release_trace
    Device core.divup core.roundup num_cores_to_corerangeset create_global_semaphore reset_global_semaphore_value
    unsqueeze_to_4D synchronize_device Tile create_sharded_memory_config_ LayerNormDefaultProgramConfig
    LayerNormShardedMultiCoreProgramConfig copy DeviceComputeKernelConfig ReduceType to_dtype from_host_shards
    FabricConfig FabricReliabilityMode set_fabric_config DispatchCoreAxis DispatchCoreType DispatchCoreConfig
    all_broadcast tilize untilize tilize_with_val_padding untilize_with_unpadding tilize_with_zero_padding
    NdShardSpec ShardDistributionStrategy experimental.all_gather_async experimental.reduce_scatter_minimal_async
    sparse_matmul moe_expert_token_remap eq ne divide rdiv get_device_tensors
    """.split()
)

#: methods and properties of ttnn classes that model code uses (class name -> member names)
CLASS_MEMBERS = {
    "Tensor": """shape padded_shape dtype layout memory_config device deallocate to_torch cpu to reshape is_allocated
        storage_type is_sharded get_dtype get_layout volume logical_volume element_size""".split(),
    "MemoryConfig": "to_json from_json".split(),
    "MeshShape": "dims mesh_size".split(),
    "MeshDevice": """shape get_num_devices create_submesh create_submeshes get_submeshes compute_with_storage_grid_size
        arch dram_grid_size get_device_ids id enable_program_cache disable_and_clear_program_cache core_grid""".split(),
}

#: emulator names real ttnn does not have, each for a reason (model code must not use them): its own
#: submodules and imports, host-side helper tables, and the trace error
EMULATOR_ONLY_NAMES = frozenset(
    {
        "BLOCK_FLOAT_DTYPES", "INTEGER_DTYPES", "MATMUL_PROGRAM_CONFIGS", "FACE_SIZE", "TensorToMesh", "MeshToTensor",
        "numerics", "mesh", "tensor", "types", "validation", "serialization", "ops", "infra", "annotations", "SimpleNamespace",
        "TraceError",  # the emulator's error for code that would break under a real trace (a RuntimeError)
    }
)

#: classes that model code never constructs (ttnn builds them): their constructors are not compared
NOT_CONSTRUCTED = frozenset({"Tensor", "MeshDevice", "Device", "CppTensorToMesh", "CppMeshToTensor", "TensorToMesh", "MeshToTensor"})

_NAME_RE = re.compile(r"\bttnn\.((?:transformer\.|experimental\.)?[A-Za-z_][A-Za-z0-9_]*)")


def model_code_ttnn_names(root: Path = REPO_ROOT / "deepseek_tt") -> dict[str, list[str]]:
    """``ttnn.<name>`` uses in the model library (not the backend itself): name -> files using it."""
    uses: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if "backend" in path.relative_to(root).parts:
            continue
        for name in set(_NAME_RE.findall(path.read_text(encoding="utf-8"))):
            uses.setdefault(name, []).append(str(path.relative_to(REPO_ROOT)))
    return uses


def resolve(module: Any, dotted: str) -> Any:
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def has_name(module: Any, dotted: str) -> bool:
    """Whether ``module`` has the dotted name (``"experimental.paged_fill_cache"``)."""
    try:
        resolve(module, dotted)
        return True
    except AttributeError:
        return False


def _literal(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and not value:
        return []
    if isinstance(value, enum.Enum) or hasattr(value, "name") and type(value).__name__[0].isupper():
        return f"{type(value).__name__}.{getattr(value, 'name', value)}"
    return _without_addresses(repr(value))


def _without_addresses(text: str) -> str:
    """``<X object at 0x7f..>`` -> ``<X object>``: a default's repr must not change from run to run."""
    return re.sub(r" at 0x[0-9a-fA-F]+>", ">", text)


def _split_top_level(text: str) -> list[str]:
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _params_from_nb_signature(sig: str, defaults: tuple) -> list[dict[str, Any]]:
    """Parameters of one nanobind overload ``'def f(a: T, *, b: T = \\0) -> R'``."""
    sig = sig.replace("\\*", "*")
    start = sig.index("(")
    depth = 0
    for end in range(start, len(sig)):
        depth += sig[end] in "([{"
        depth -= sig[end] in ")]}"
        if depth == 0:
            break
    params, kind = [], "positional_or_keyword"
    raw = _split_top_level(sig[start + 1 : end])
    if "/" in raw:
        cut = raw.index("/")
        kinds = ["positional_only"] * cut + ["positional_or_keyword"] * (len(raw) - cut)
    else:
        kinds = ["positional_or_keyword"] * len(raw)
    for text, kind_before in zip(raw, kinds):
        if text == "/":
            continue
        if text == "*":
            kind = "keyword_only"
            continue
        if text.startswith("**"):
            params.append({"name": text[2:].split(":")[0].strip(), "kind": "var_keyword", "has_default": False, "default": None})
            continue
        if text.startswith("*"):
            params.append({"name": text[1:].split(":")[0].strip(), "kind": "var_positional", "has_default": False, "default": None})
            kind = "keyword_only"
            continue
        name = re.split(r"[:=]", text, maxsplit=1)[0].strip()
        if name == "self":
            continue
        default_match = re.search(r"=\s*\\(\d+)\s*$", text)
        has_default = bool(default_match) or bool(re.search(r"\s=\s", text))
        default: Any = None
        if default_match and int(default_match.group(1)) < len(defaults):
            default = _literal(defaults[int(default_match.group(1))])
        elif has_default:
            default = _without_addresses(text.rsplit("=", 1)[1].strip())
        params.append({"name": name, "kind": kind if kind == "keyword_only" else kind_before,
                       "has_default": has_default, "default": default})
    return params


def _params_from_inspect(fn: Any) -> list[dict[str, Any]]:
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self":
            continue
        has_default = p.default is not inspect.Parameter.empty
        params.append({"name": p.name, "kind": p.kind.name.lower(), "has_default": has_default,
                       "default": _literal(p.default) if has_default else None})
    return params


def _overloads(fn: Any) -> list[list[dict[str, Any]]] | None:
    target = getattr(fn, "function", fn)  # ttnn's FastOperation wraps the real callable
    for candidate in (target, getattr(type(target), "__call__", None)):
        nb = getattr(candidate, "__nb_signature__", None)
        if nb:
            return [_params_from_nb_signature(entry[0], tuple(entry[2] or ()) if len(entry) > 2 else ()) for entry in nb]
    try:
        return [_params_from_inspect(target)]
    except (TypeError, ValueError):
        return None


def describe(obj: Any) -> dict[str, Any]:
    """JSON-able description of a ttnn (real or emulated) attribute."""
    if isinstance(obj, (ModuleType, SimpleNamespace)):
        return {"kind": "namespace"}
    if isinstance(obj, type) and issubclass(obj, enum.Enum) or isinstance(obj, type) and hasattr(obj, "__members__"):
        return {"kind": "enum", "members": sorted(obj.__members__)}
    if isinstance(obj, type):
        return {"kind": "class", "overloads": _overloads(obj.__init__) or []}
    if callable(obj):
        return {"kind": "function", "overloads": _overloads(obj) or []}
    return {"kind": "value", "repr": repr(obj)[:200]}


def describe_member(cls: type, name: str) -> dict[str, Any]:
    """A class member: ``{"kind": "property"}`` or a function description of the method."""
    attr = inspect.getattr_static(cls, name)
    if isinstance(attr, property) or (inspect.isdatadescriptor(attr) and not callable(attr)) or "property" in type(attr).__name__:
        return {"kind": "property"}
    return describe(getattr(cls, name))


def describe_members(module: Any) -> dict[str, dict[str, Any]]:
    """``"Class.member"`` -> description, for :data:`CLASS_MEMBERS` found in ``module``."""
    found = {}
    for cls_name, members in CLASS_MEMBERS.items():
        cls = getattr(module, cls_name)
        for member in members:
            if hasattr(cls, member):
                found[f"{cls_name}.{member}"] = describe_member(cls, member)
    return found


def member_problems(real: dict[str, Any], emu: dict[str, Any] | None) -> list[str]:
    if emu is None:
        return ["missing"]
    if (real["kind"] == "property") != (emu["kind"] == "property"):
        return [f"is a {emu['kind']} here, ttnn has a {real['kind']}"]
    return [] if real["kind"] == "property" else signature_problems(real, emu)


def public_names(module: Any) -> list[str]:
    names = [n for n in dir(module) if not n.startswith("_")]
    for space in ("transformer", "experimental"):
        sub = getattr(module, space, None)
        if sub is not None:
            names += [f"{space}.{n}" for n in dir(sub) if not n.startswith("_")]
    return sorted(names)


def _overload_problems(real: list[dict], emu: list[dict]) -> list[str]:
    problems = []
    emu_by_name = {p["name"]: p for p in emu}
    accepts_kwargs = any(p["kind"] == "var_keyword" for p in emu)
    accepts_args = any(p["kind"] == "var_positional" for p in emu)
    real_positional = [p["name"] for p in real if p["kind"] in ("positional_only", "positional_or_keyword")]
    emu_positional = [p["name"] for p in emu if p["kind"] in ("positional_only", "positional_or_keyword")]
    real_kinds = {p["name"]: p["kind"] for p in real}
    exempt_real, exempt_emu = set(), set()  # positional-only parameters match by position, not name
    for i, name in enumerate(real_positional):
        if real_kinds[name] == "positional_only" and i < len(emu_positional):
            exempt_real.add(name)
            exempt_emu.add(emu_positional[i])
    for i, name in enumerate(real_positional):
        if i >= len(emu_positional):
            if not accepts_args:
                problems.append(f"positional parameter {i} ({name!r}) not accepted positionally")
        elif emu_positional[i] != name and name not in exempt_real:
            problems.append(f"positional parameter {i} is {emu_positional[i]!r}, ttnn has {name!r}")
    for p in real:
        if p["kind"] in ("var_positional", "var_keyword") or p["name"] in exempt_real:
            continue
        mine = emu_by_name.get(p["name"])
        if mine is None:
            if not accepts_kwargs:
                problems.append(f"missing parameter {p['name']!r}")
            continue
        if p["kind"] == "keyword_only" and mine["kind"] not in ("keyword_only", "positional_or_keyword"):
            problems.append(f"{p['name']!r} must be accepted as a keyword")
        if not p["has_default"] and mine["has_default"]:
            problems.append(f"{p['name']!r} is required in ttnn but has a default here")
        if p["has_default"] and not mine["has_default"]:
            problems.append(f"{p['name']!r} has a default in ttnn ({p['default']!r}) but is required here")
        literal = (type(None), bool, int, float)
        comparable = isinstance(p["default"], literal) or (
            isinstance(p["default"], str) and re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", p["default"]) is not None
        )  # JSON literals and enum members such as "Layout.ROW_MAJOR"
        if p["has_default"] and mine["has_default"] and comparable and p["default"] != mine["default"]:
            problems.append(f"default of {p['name']!r} is {mine['default']!r}, ttnn has {p['default']!r}")
    real_names = {p["name"] for p in real}
    for p in emu:
        if (p["kind"] not in ("var_positional", "var_keyword") and p["name"] not in real_names
                and p["name"] not in exempt_emu and not p["name"].startswith("_")):
            problems.append(f"parameter {p['name']!r} does not exist in ttnn")
    return problems


def signature_problems(real: dict[str, Any], emu: dict[str, Any]) -> list[str]:
    """Why the emulator's description does not match the real one (empty when it matches).

    Functions/classes: the emulator must match at least one real overload (same positional order,
    every real parameter accepted, same required-ness, same literal defaults, no extra parameters).
    Enums: the emulator must have every real member.
    """
    if real["kind"] == "enum":
        if emu["kind"] != "enum":
            return [f"is a {emu['kind']}, ttnn has an enum"]
        missing = sorted(set(real["members"]) - set(emu["members"]))
        return [f"missing enum members {missing}"] if missing else []
    if real["kind"] in ("value", "namespace"):
        return []
    if emu["kind"] not in ("function", "class"):
        return [f"is a {emu['kind']}, ttnn has a {real['kind']}"]
    if not real["overloads"] or not emu["overloads"]:
        return []
    candidates = [_overload_problems(r, e) for r in real["overloads"] for e in emu["overloads"]]
    return min(candidates, key=len)
