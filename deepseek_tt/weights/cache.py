"""The converted-weight cache (DESIGN.md section 3).

Layout: ``<cache-dir>/<fingerprint>/mesh_<R>x<C>/`` holding the dumped ttnn tensors and ``manifest.json``
(the fingerprint inputs, the weight config with relative paths, and each file's size and blake2b
checksum). The fingerprint hashes the HF config, the dtype policy, the mesh shape, the converter version
and the identity of the source weights (checkpoint files, or the random-weight seed).

An entry is written under a temporary name in the same directory and renamed into place only when the
conversion finished and the manifest is written, so an interrupted run never leaves an entry that a later
run trusts. On load the manifest is checked (inputs equal, every file present with its size, and the
checksums for caches below ``CHECKSUM_LIMIT_BYTES``); anything wrong is logged with the reason and the
entry is rebuilt. ``recalculate=True`` (``--recalculate-weights``) always rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.run_config import iter_weight_records, weight_config_from_json, weight_config_to_json

logger = logging.getLogger(__name__)

#: Bump when the converted layout of any module changes: old entries then stop matching.
CONVERTER_VERSION = "1"
MANIFEST_NAME = "manifest.json"
#: Entries up to this size are checksummed on every load; larger ones are checked by size only.
CHECKSUM_LIMIT_BYTES = 1 << 30

#: HF config fields that do not change the converted weights.
_VOLATILE_CONFIG_KEYS = frozenset(
    {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "architectures", "auto_map", "_attn_implementation_autoset", "output_attentions", "output_hidden_states", "use_cache", "return_dict"}
)


def config_identity(hf_config: Any) -> dict[str, Any]:
    """The HF config fields that matter for conversion (JSON data)."""
    data = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
    return json.loads(json.dumps({k: v for k, v in sorted(data.items()) if k not in _VOLATILE_CONFIG_KEYS}, default=str))


def checkpoint_identity(model_dir: Path, sample_bytes: int = 1 << 20) -> dict[str, Any]:
    """Identity of a safetensors checkpoint: the index and, per shard, its size and a hash of its first
    ``sample_bytes`` (header plus the start of the data) -- cheap, and it tells two seeds apart."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.iterdir() if p.suffix == ".safetensors" or p.name == "model.safetensors.index.json")
    shards = {}
    for path in files:
        digest = hashlib.blake2b(digest_size=16)
        with path.open("rb") as handle:
            digest.update(handle.read(sample_bytes))
        shards[path.name] = {"size": path.stat().st_size, "head_blake2b": digest.hexdigest()}
    return {"checkpoint": shards}


def fingerprint_inputs(hf_config: Any, dtype_policy: DtypePolicy | str | None, mesh_shape: tuple[int, int], weights_identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "converter_version": CONVERTER_VERSION,
        "hf_config": config_identity(hf_config),
        "dtype_policy": get_dtype_policy(dtype_policy).to_json(),
        "mesh_shape": [int(d) for d in mesh_shape],
        "weights": weights_identity,
    }


def fingerprint_of(inputs: dict[str, Any]) -> str:
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _file_checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _diff_keys(old: Any, new: Any, path: str = "") -> list[str]:
    """Key paths where two JSON trees differ (for the 'why' of a rebuild)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff_keys(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if old == new else [path or "<root>"]


@dataclass
class CacheResult:
    """What :meth:`WeightCache.load_or_convert` did."""

    weight_config: dict[str, Any]
    entry_dir: Path
    converted: bool
    reason: str
    seconds: float


class WeightCache:
    """One cache entry: ``<cache_dir>/<fingerprint>/mesh_<R>x<C>``."""

    def __init__(
        self,
        cache_dir: Path,
        hf_config: Any,
        dtype_policy: DtypePolicy | str | None,
        mesh_shape: tuple[int, int],
        weights_identity: dict[str, Any],
    ) -> None:
        self.cache_dir = Path(cache_dir).expanduser().resolve()
        self.mesh_shape = (int(mesh_shape[0]), int(mesh_shape[1]))
        self.inputs = fingerprint_inputs(hf_config, dtype_policy, self.mesh_shape, weights_identity)
        self.fingerprint = fingerprint_of(self.inputs)
        self.mesh_name = f"mesh_{self.mesh_shape[0]}x{self.mesh_shape[1]}"
        self.entry_dir = self.cache_dir / self.fingerprint / self.mesh_name

    # --- validation ------------------------------------------------------------------------------

    def _read_manifest(self, entry: Path) -> dict[str, Any]:
        path = entry / MANIFEST_NAME
        if not path.is_file():
            raise ValueError(f"{path} is missing (an incomplete entry)")
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not readable JSON ({exc})") from exc

    def check(self, verify_checksums: bool | None = None) -> tuple[bool, str]:
        """``(valid, reason)`` for the entry on disk."""
        entry = self.entry_dir
        if not entry.exists():
            return False, self._miss_reason()
        try:
            manifest = self._read_manifest(entry)
        except ValueError as exc:
            return False, str(exc)
        if manifest.get("inputs") != self.inputs:
            changed = ", ".join(_diff_keys(manifest.get("inputs"), self.inputs)[:8])
            return False, f"{entry / MANIFEST_NAME} was written for different inputs (changed: {changed})"
        files = manifest.get("files", {})
        total = sum(int(f["size"]) for f in files.values())
        if verify_checksums is None:
            verify_checksums = total <= CHECKSUM_LIMIT_BYTES
        for rel, info in files.items():
            path = entry / rel
            if not path.is_file():
                return False, f"{path} is missing"
            size = path.stat().st_size
            if size != int(info["size"]):
                return False, f"{path} has {size} bytes, the manifest says {info['size']} (truncated or overwritten)"
            if verify_checksums and _file_checksum(path) != info["blake2b"]:
                return False, f"{path} does not match its checksum in the manifest (corrupt)"
        for _, record in iter_weight_records(weight_config_from_json(manifest.get("weight_config"))):
            if record.path not in files:
                return False, f"{entry / MANIFEST_NAME}: weight {record.path} is not listed among the files"
        return True, "valid"

    def _miss_reason(self) -> str:
        """Why there is no entry: a sibling entry for the same mesh with other inputs says what changed."""
        if self.cache_dir.is_dir():
            for sibling in sorted(self.cache_dir.glob(f"*/{self.mesh_name}/{MANIFEST_NAME}")):
                try:
                    old_inputs = json.loads(sibling.read_text()).get("inputs")
                except (OSError, json.JSONDecodeError):
                    continue
                changed = _diff_keys(old_inputs, self.inputs)
                if changed and len(changed) <= 8:
                    return f"no entry for fingerprint {self.fingerprint}; {sibling.parent} differs in {', '.join(changed)}"
        return f"no entry for fingerprint {self.fingerprint} under {self.cache_dir}"

    # --- load / convert --------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """The weight config of a valid entry (relative paths: merge with ``weight_root=self.entry_dir``)."""
        return weight_config_from_json(self._read_manifest(self.entry_dir)["weight_config"])

    def load_or_convert(
        self,
        convert: Callable[[Path], dict[str, Any]],
        *,
        recalculate: bool = False,
        verify_checksums: bool | None = None,
    ) -> CacheResult:
        """Use the entry when valid; otherwise call ``convert(output_dir)`` (which writes the tensors and
        returns the weight config) into a temporary directory and install it atomically."""
        start = time.perf_counter()
        if recalculate:
            reason = "recalculation requested (--recalculate-weights)"
        else:
            valid, reason = self.check(verify_checksums)
            if valid:
                logger.info("weight cache hit: %s", self.entry_dir)
                return CacheResult(self.load(), self.entry_dir, False, "cache hit", time.perf_counter() - start)
        logger.warning("converting weights into %s: %s", self.entry_dir, reason)
        self._convert_into_place(convert)
        return CacheResult(self.load(), self.entry_dir, True, reason, time.perf_counter() - start)

    def _convert_into_place(self, convert: Callable[[Path], dict[str, Any]]) -> None:
        parent = self.entry_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".tmp-{self.mesh_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            weight_config = convert(tmp)
            self._write_manifest(tmp, weight_config)
            if self.entry_dir.exists():
                stale = parent / f".stale-{self.mesh_name}-{uuid.uuid4().hex[:8]}"
                os.rename(self.entry_dir, stale)
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(tmp, self.entry_dir)
            except OSError:
                # Another process installed the entry meanwhile; keep theirs if it is valid.
                if not self.check()[0]:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _write_manifest(self, root: Path, weight_config: dict[str, Any]) -> None:
        relative = weight_config_to_json(weight_config, root=root)
        files = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
            files[str(path.relative_to(root))] = {"size": path.stat().st_size, "blake2b": _file_checksum(path)}
        manifest = {
            "fingerprint": self.fingerprint,
            "inputs": self.inputs,
            "weight_config": relative,
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp_manifest = root / (MANIFEST_NAME + ".part")
        tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp_manifest, root / MANIFEST_NAME)
