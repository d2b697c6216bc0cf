"""The converted-weight cache (docs/DESIGN.md section 3).

Layout: ``<cache-dir>/<fingerprint>/mesh_<R>x<C>/`` holding the dumped ttnn tensors and ``manifest.json``
(the fingerprint inputs, the weight config with relative paths, and each file's size and xxh3-128
checksum). The fingerprint hashes the HF config, the dtype policy, the mesh shape, the converter version
and the identity of the source weights: per checkpoint file its size, modification time (ns) and a hash
of its safetensors header (any write to a shard changes its mtime; the header pins names, dtypes, shapes
and offsets), or the random-weight seed.

An entry is written under a temporary name (``.tmp-mesh_<R>x<C>-h<host>-p<pid>-<id>``) in the same
directory and renamed into place only when the conversion finished and the manifest is written, so an
interrupted run never leaves an entry that a later run trusts; temporary directories whose owner process
is gone (same host, pid dead or reused) are removed by the next run. On load the manifest is checked
(well-formed, inputs equal, every file present with its size); any problem, a malformed manifest
included, is logged with the reason and the entry is rebuilt. The file checksums are verified as each
file is loaded (:class:`VerifiedLoads`, used by ``TtModel``), at any cache size; a mismatch raises
:class:`CorruptCacheFileError` and the caller rebuilds. ``check(verify_checksums=True)`` hashes every file
up front (the default for entries below ``CHECKSUM_LIMIT_BYTES`` when no loader verifies).
``recalculate=True`` (``--recalculate-weights``) always rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.weights.weight_config_json import iter_weight_records, weight_config_from_json, weight_config_to_json

logger = logging.getLogger(__name__)

#: Bump when the converted layout of any module changes: old entries then stop matching.
CONVERTER_VERSION = "1"
#: Bump when the manifest's layout changes (2: xxh3-128 checksums, verified at load).
MANIFEST_VERSION = 2
MANIFEST_NAME = "manifest.json"
CHECKSUM_KEY = "xxh3_128"
#: Without a verifying loader, entries up to this size are checksummed up front on every load.
CHECKSUM_LIMIT_BYTES = 1 << 30
#: A safetensors header larger than this is not a safetensors header (the format caps it at 100 MB).
MAX_SAFETENSORS_HEADER = 100_000_000
_READ_CHUNK = 1 << 22

#: HF config fields that do not change the converted weights.
_VOLATILE_CONFIG_KEYS = frozenset(
    {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "architectures", "auto_map", "_attn_implementation_autoset", "output_attentions", "output_hidden_states", "use_cache", "return_dict"}
)


class CacheDirError(ValueError):
    """The cache directory cannot be used (a file, not creatable, not writable); the message names it."""


class CorruptCacheFileError(RuntimeError):
    """A cached tensor file does not match the checksum its manifest recorded."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(f"{path} does not match its checksum in the manifest (corrupt): {CHECKSUM_KEY} {actual}, expected {expected}")
        self.path = path


def config_identity(hf_config: Any) -> dict[str, Any]:
    """The HF config fields that matter for conversion (JSON data)."""
    data = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
    return json.loads(json.dumps({k: v for k, v in sorted(data.items()) if k not in _VOLATILE_CONFIG_KEYS}, default=str))


def _safetensors_header_hash(path: Path, size: int) -> str:
    """xxh3-128 of a shard's header (length prefix + JSON); of its first MiB when it has no valid header."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
        if 0 <= length <= min(MAX_SAFETENSORS_HEADER, size - 8):
            return xxhash.xxh3_128_hexdigest(prefix + handle.read(length))
        handle.seek(0)
        return "raw:" + xxhash.xxh3_128_hexdigest(handle.read(1 << 20))


def checkpoint_identity(model_dir: Path) -> dict[str, Any]:
    """Identity of a safetensors checkpoint: per file (shards and index) its size, ``mtime_ns`` and the
    hash of its safetensors header (of the whole file for the JSON index). Any write to a file changes
    its mtime, so a changed byte anywhere gives another identity; reading it costs a few KiB per shard."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.iterdir() if p.suffix == ".safetensors" or p.name == "model.safetensors.index.json")
    shards = {}
    for path in files:
        stat = path.stat()
        if path.suffix == ".safetensors":
            digest = _safetensors_header_hash(path, stat.st_size)
        else:
            digest = xxhash.xxh3_128_hexdigest(path.read_bytes())
        shards[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "header_xxh3_128": digest}
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


def file_checksum(path: Path) -> str:
    """xxh3-128 of a file's bytes (hex)."""
    digest = xxhash.xxh3_128()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
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


def parse_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, checked for shape; ``ValueError`` naming the file and the problem."""
    if not path.is_file():
        raise ValueError(f"{path} is missing (an incomplete entry)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} is malformed: expected a JSON object, got {type(data).__name__}")
    if data.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(f"{path} has manifest_version {data.get('manifest_version')!r}, expected {MANIFEST_VERSION} (an older cache format)")
    if not isinstance(data.get("inputs"), dict):
        raise ValueError(f"{path} is malformed: 'inputs' is not an object")
    files = data.get("files")
    if not isinstance(files, dict):
        raise ValueError(f"{path} is malformed: 'files' is not an object")
    for rel, info in files.items():
        if (
            not isinstance(info, dict)
            or type(info.get("size")) is not int
            or info["size"] < 0
            or not isinstance(info.get(CHECKSUM_KEY), str)
            or not rel
            or Path(rel).is_absolute()
            or ".." in Path(rel).parts
        ):
            raise ValueError(f"{path} is malformed: file entry {rel!r} needs a relative path, an integer 'size' and a string {CHECKSUM_KEY!r}")
    if not isinstance(data.get("weight_config"), dict):
        raise ValueError(f"{path} is malformed: 'weight_config' is not an object")
    try:
        records = list(iter_weight_records(weight_config_from_json(data["weight_config"])))
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"{path} is malformed: 'weight_config' ({str(exc)[:200]})") from exc
    referenced = set()
    for _, record in records:
        if not isinstance(record.path, str) or record.path not in files:
            raise ValueError(f"{path}: weight {record.path!r} is not listed among the files")
        referenced.add(record.path)
    unused = sorted(set(files) - referenced)
    if unused:  # every converted file is a weight: a file no weight names means a damaged weight config
        raise ValueError(f"{path} is malformed: file {unused[0]!r} is listed but no weight in 'weight_config' uses it")
    return data


# --- leftovers of killed conversions -------------------------------------------------------------

_TMP_RE = re.compile(r"^\.tmp-mesh_\d+x\d+-(?:h(?P<host>[0-9a-f]{8})-p)?(?P<pid>\d+)-[0-9a-f]{8}$")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _process_start_time(pid: int) -> float | None:
    """Wall-clock start of process ``pid`` (Linux /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def _owner_alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` exists and was started before ``since`` (else the pid was reused)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return True
    start = _process_start_time(pid)
    return start is None or start <= since + 2.0


def clean_stale_temporaries(cache_dir: Path) -> list[Path]:
    """Remove ``.tmp-*`` entries of conversions whose process is gone (this host only) and ``.stale-*``
    entries (old entries being deleted when their remover was killed) -> the removed paths."""
    removed: list[Path] = []
    if not cache_dir.is_dir():
        return removed
    host = _host_tag()
    for path in cache_dir.glob("*/.*"):
        if not path.is_dir():
            continue
        if path.name.startswith(".stale-"):
            stale = True
        else:
            match = _TMP_RE.match(path.name)
            if match is None or (match["host"] is not None and match["host"] != host):
                continue  # not ours, or another machine's conversion on a shared cache: leave it
            try:
                since = path.stat().st_mtime
            except OSError:
                continue
            stale = not _owner_alive(int(match["pid"]), since)
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
                logger.warning("removed %s (left by an interrupted conversion)", path)
    return removed


@dataclass
class CacheResult:
    """What :meth:`WeightCache.load_or_convert` did."""

    weight_config: dict[str, Any]
    entry_dir: Path
    converted: bool
    reason: str
    seconds: float
    checksums: dict[str, str] | None = None

    def verified_loads(self) -> "VerifiedLoads":
        """A ``loaded`` memo for ``create_run_config`` that verifies each file against the manifest."""
        return VerifiedLoads(self.entry_dir, self.checksums or {})


class VerifiedLoads(dict):
    """The ``loaded`` memo of ``create_run_config`` for a cache entry: ``verify_file(path)`` hashes a file
    (xxh3-128) right before ``ttnn.load_tensor`` reads it, so the load finds it in the page cache."""

    def __init__(self, entry_dir: Path, checksums: dict[str, str]) -> None:
        super().__init__()
        self.entry_dir = Path(entry_dir)
        self.checksums = dict(checksums)
        self.verified_files = 0

    def verify_file(self, path: Path) -> None:
        try:
            rel = str(Path(path).resolve().relative_to(self.entry_dir.resolve()))
        except ValueError:
            return  # not a file of this entry
        expected = self.checksums.get(rel)
        if expected is None:
            raise CorruptCacheFileError(Path(path), "<listed in the manifest>", "<not listed>")
        actual = file_checksum(Path(path))
        if actual != expected:
            raise CorruptCacheFileError(Path(path), expected, actual)
        self.verified_files += 1


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
        self.mesh_name = f"mesh_{format_mesh_shape(self.mesh_shape)}"
        self.entry_dir = self.cache_dir / self.fingerprint / self.mesh_name

    # --- validation ------------------------------------------------------------------------------

    def check(self, verify_checksums: bool | None = None) -> tuple[bool, str]:
        """``(valid, reason)`` for the entry on disk (checksums: see the module docstring)."""
        entry = self.entry_dir
        if not entry.exists():
            return False, self._miss_reason()
        try:
            manifest = parse_manifest(entry / MANIFEST_NAME)
        except ValueError as exc:
            return False, str(exc)
        if manifest["inputs"] != self.inputs:
            changed = ", ".join(_diff_keys(manifest["inputs"], self.inputs)[:8])
            return False, f"{entry / MANIFEST_NAME} was written for different inputs (changed: {changed})"
        files = manifest["files"]
        if verify_checksums is None:
            verify_checksums = sum(f["size"] for f in files.values()) <= CHECKSUM_LIMIT_BYTES
        for rel, info in files.items():
            path = entry / rel
            if not path.is_file():
                return False, f"{path} is missing"
            size = path.stat().st_size
            if size != info["size"]:
                return False, f"{path} has {size} bytes, the manifest says {info['size']} (truncated or overwritten)"
            if verify_checksums and file_checksum(path) != info[CHECKSUM_KEY]:
                return False, f"{path} does not match its checksum in the manifest (corrupt)"
        return True, "valid"

    def _miss_reason(self) -> str:
        """Why there is no entry: a sibling entry for the same mesh with other inputs says what changed."""
        if self.cache_dir.is_dir():
            for sibling in sorted(self.cache_dir.glob(f"*/{self.mesh_name}/{MANIFEST_NAME}")):
                try:
                    old_inputs = json.loads(sibling.read_text()).get("inputs")
                except (OSError, ValueError, AttributeError, RecursionError):
                    continue
                changed = _diff_keys(old_inputs, self.inputs)
                if changed and len(changed) <= 8:
                    return f"no entry for fingerprint {self.fingerprint}; {sibling.parent} differs in {', '.join(changed)}"
        return f"no entry for fingerprint {self.fingerprint} under {self.cache_dir}"

    # --- load / convert --------------------------------------------------------------------------

    def load(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The weight config of a valid entry (relative paths: merge with ``weight_root=self.entry_dir``)
        and each file's checksum."""
        manifest = parse_manifest(self.entry_dir / MANIFEST_NAME)
        checksums = {rel: info[CHECKSUM_KEY] for rel, info in manifest["files"].items()}
        return weight_config_from_json(manifest["weight_config"]), checksums

    def load_or_convert(
        self,
        convert: Callable[[Path], dict[str, Any]],
        *,
        recalculate: bool = False,
        verify_checksums: bool | None = None,
        reason: str | None = None,
    ) -> CacheResult:
        """Use the entry when valid; otherwise call ``convert(output_dir)`` (which writes the tensors and
        returns the weight config) into a temporary directory and install it atomically."""
        start = time.perf_counter()
        clean_stale_temporaries(self.cache_dir)
        if recalculate:
            reason = reason or "recalculation requested (--recalculate-weights)"
        else:
            valid, reason = self.check(verify_checksums)
            if valid:
                logger.info("weight cache hit: %s", self.entry_dir)
                config, checksums = self.load()
                return CacheResult(config, self.entry_dir, False, "cache hit", time.perf_counter() - start, checksums)
        logger.warning("converting weights into %s: %s", self.entry_dir, reason)
        self._convert_into_place(convert)
        config, checksums = self.load()
        return CacheResult(config, self.entry_dir, True, reason, time.perf_counter() - start, checksums)

    def _make_parent(self) -> Path:
        parent = self.entry_dir.parent
        for ancestor in [self.cache_dir, *self.cache_dir.parents]:
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise CacheDirError(f"cache directory {self.cache_dir}: {ancestor} is not a directory")
                break
        try:
            parent.mkdir(parents=True, exist_ok=True)
            probe = parent / f".probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            raise CacheDirError(f"cache directory {self.cache_dir} is not writable ({exc.strerror or exc}); converted weights cannot be stored") from None
        return parent

    def _convert_into_place(self, convert: Callable[[Path], dict[str, Any]]) -> None:
        parent = self._make_parent()
        tmp = parent / f".tmp-{self.mesh_name}-h{_host_tag()}-p{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
            files[str(path.relative_to(root))] = {"size": path.stat().st_size, CHECKSUM_KEY: file_checksum(path)}
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "fingerprint": self.fingerprint,
            "inputs": self.inputs,
            "weight_config": relative,
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp_manifest = root / (MANIFEST_NAME + ".part")
        tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp_manifest, root / MANIFEST_NAME)
