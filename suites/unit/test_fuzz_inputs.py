"""Property-based fuzzing (hypothesis) of the readers of user files: prompt files, ``.refpt``
files (random bytes, damaged real files, random torch-saved objects) and weight-cache manifests.

Each property: the reader either returns a correct parse (checked) or raises its one documented error
type with a message naming the file; anything else (a traceback of another type) fails the test. The
example counts are bounded for CI (``--hypothesis-show-statistics`` prints them).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deepseek_tt.accuracy.refpt import TOP_K, RefptError, RefptReference, load_refpt
from deepseek_tt.demo.errors import DemoInputError
from deepseek_tt.demo.prompts import load_prompts_file
from deepseek_tt.weights import cache as cache_module
from deepseek_tt.weights.cache import MANIFEST_NAME, WeightCache, parse_manifest

pytestmark = pytest.mark.unit

FUZZ = settings(
    max_examples=80, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

JSON_LEAVES = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


# --- prompt files --------------------------------------------------------------------------------

PROMPT_ENTRY = st.one_of(
    st.fixed_dictionaries({"prompt": st.text(max_size=30)}),
    st.fixed_dictionaries({"prompt": JSON}),
    st.dictionaries(st.sampled_from(["prompt", "text", "id"]), JSON, max_size=3),
    JSON,
)
PROMPT_FILES = st.one_of(
    st.lists(PROMPT_ENTRY, max_size=5),
    st.fixed_dictionaries({"prompts": st.lists(PROMPT_ENTRY, max_size=5)}),
    st.dictionaries(st.sampled_from(["prompts", "questions"]), JSON, max_size=2),
    JSON,
)


def _check_prompts_result(path: Path, content, num_prompts):
    try:
        prompts = load_prompts_file(path, num_prompts)
    except DemoInputError as exc:
        message = str(exc)
        assert message.startswith((f"--prompts-file {path}", "--num-prompts")) and "\n" not in message
        return
    entries = content if isinstance(content, list) else content["prompts"]
    expected = [e["prompt"] for e in entries]
    assert prompts == expected[: num_prompts or len(expected)]
    assert all(isinstance(p, str) and p.strip() for p in prompts)


@FUZZ
@given(content=PROMPT_FILES, num_prompts=st.none() | st.integers(-2, 6))
def test_prompt_files_of_any_json_shape(tmp_path, content, num_prompts):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    _check_prompts_result(path, content, num_prompts)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_prompt_files_of_random_bytes(tmp_path, raw):
    path = tmp_path / "prompts.json"
    path.write_bytes(raw)
    try:
        content = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        with pytest.raises(DemoInputError, match="--prompts-file"):
            load_prompts_file(path)
        return
    _check_prompts_result(path, content, None)


# --- .refpt files --------------------------------------------------------------------------------

INT_DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8]
ALL_DTYPES = INT_DTYPES + [torch.float32, torch.bool]


@st.composite
def small_tensors(draw):
    dtype = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=3))
    numel = math.prod(shape)
    if dtype == torch.bool:
        values = draw(st.lists(st.booleans(), min_size=numel, max_size=numel))
    elif dtype.is_floating_point:
        values = draw(st.lists(st.floats(-1e3, 1e3), min_size=numel, max_size=numel))
    else:
        lo, hi = (0, 255) if dtype == torch.uint8 else (-3, 120)
        values = draw(st.lists(st.integers(lo, hi), min_size=numel, max_size=numel))
    return torch.tensor(values, dtype=dtype).reshape(shape)


VALUES = st.one_of(small_tensors(), st.integers(-5, 50), st.text(max_size=5), st.none(),
                   st.lists(st.integers(-5, 50), max_size=6), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
KEYS = st.sampled_from(["reference_tokens", "top5_tokens", "prompt_tokens", "generated_tokens", "tf_prompt_len", "metadata", "other"])
ENTRY = st.dictionaries(KEYS, VALUES, max_size=5)
REFPT_OBJECTS = st.one_of(
    ENTRY,
    st.builds(lambda entries, extra: {"entries": entries, **extra}, st.lists(ENTRY | VALUES, max_size=3), ENTRY),
    VALUES,
)


def _check_refpt(path: Path, vocab_size: int | None = None, entry_index: int | None = None) -> None:
    try:
        ref = load_refpt(path, vocab_size=vocab_size, entry_index=entry_index)
    except RefptError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    assert isinstance(ref, RefptReference)
    assert ref.tokens.dtype == torch.long and ref.tokens.dim() == 1 and ref.length >= 2
    if ref.top5 is not None:
        assert tuple(ref.top5.shape) == (ref.length, TOP_K)
    if vocab_size is not None:
        assert int(ref.tokens.min()) >= 0 and int(ref.tokens.max()) < vocab_size
    try:
        n = ref.prompt_len()
    except RefptError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert 1 <= n < ref.length


@FUZZ
@given(obj=REFPT_OBJECTS, vocab=st.none() | st.integers(1, 130), entry_index=st.none() | st.integers(-2, 2))
def test_refpt_reader_on_random_torch_saved_objects(tmp_path, obj, vocab, entry_index):
    path = tmp_path / "r.refpt"
    torch.save(obj, path)
    _check_refpt(path, vocab, entry_index)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_refpt_reader_on_random_bytes(tmp_path, raw):
    path = tmp_path / "r.refpt"
    path.write_bytes(raw)
    with pytest.raises(RefptError, match="r.refpt"):
        load_refpt(path)


def _valid_refpt_bytes() -> bytes:
    buffer = io.BytesIO()
    tokens = torch.arange(10, 22).view(1, 12)
    torch.save({"reference_tokens": tokens, "top5_tokens": torch.stack([torch.arange(i, i + 5) for i in range(12)]), "tf_prompt_len": 4}, buffer)
    return buffer.getvalue()


VALID_REFPT = _valid_refpt_bytes()


@FUZZ
@given(cut=st.integers(0, len(VALID_REFPT)), flips=st.lists(st.tuples(st.integers(0, len(VALID_REFPT) - 1), st.integers(1, 255)), max_size=4))
def test_refpt_reader_on_damaged_real_files(tmp_path, cut, flips):
    data = bytearray(VALID_REFPT)
    for offset, mask in flips:
        data[offset] ^= mask
    path = tmp_path / "r.refpt"
    path.write_bytes(bytes(data[:cut]))
    _check_refpt(path, vocab_size=40)


# --- weight-cache manifests ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_entry(tmp_path_factory):
    """A real cache entry (the tiny preset's dense layer) and its valid manifest."""
    from deepseek_tt.backend import ttnn
    from deepseek_tt.weights.convert import load_or_convert_model_weights
    from reference_models.presets import get_preset

    config = get_preset("tiny", num_layers=1)
    root = tmp_path_factory.mktemp("fuzz_cache")
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    try:
        result = load_or_convert_model_weights(config, mesh, root, random_seed=3, progress=False)
    finally:
        ttnn.close_mesh_device(mesh)
    cache = WeightCache(root, config, "default", (1, 1), {"random": {"seed": 3, "generator": _generator_identity()}})
    assert cache.entry_dir == result.entry_dir
    manifest = json.loads((result.entry_dir / MANIFEST_NAME).read_text())
    return cache, manifest


def _generator_identity():
    from deepseek_tt.weights.convert import random_generator_identity

    return random_generator_identity()


@st.composite
def mutated_manifests(draw, manifest):
    """The valid manifest with one subtree replaced by random JSON (or removed)."""
    data = json.loads(json.dumps(manifest))
    node = data
    while True:
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        break
    if isinstance(node, dict) and draw(st.booleans()):
        del node[key]
    else:
        node[key] = draw(JSON)
    return data


def _check_manifest(cache: WeightCache, text: str, valid_text: str) -> None:
    path = cache.entry_dir / MANIFEST_NAME
    path.write_text(text, encoding="utf-8")
    valid, reason = cache.check(verify_checksums=True)
    assert isinstance(reason, str) and reason
    if valid:  # only a manifest equivalent to the real one may pass (extra keys are ignored)
        got, real = json.loads(text), json.loads(valid_text)
        assert got["inputs"] == real["inputs"] and got["weight_config"] == real["weight_config"]
        assert {k: (v["size"], v["xxh3_128"]) for k, v in got["files"].items()} == {k: (v["size"], v["xxh3_128"]) for k, v in real["files"].items()}
    try:
        parse_manifest(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    assert isinstance(cache._miss_reason(), str)


@FUZZ
@given(data=st.data())
def test_manifest_mutations_are_rejected_or_equivalent(cache_entry, data):
    cache, manifest = cache_entry
    valid_text = json.dumps(manifest)
    try:
        _check_manifest(cache, json.dumps(data.draw(mutated_manifests(manifest))), valid_text)
    finally:
        (cache.entry_dir / MANIFEST_NAME).write_text(valid_text)


@FUZZ
@given(content=JSON | st.text(max_size=50))
def test_manifests_of_random_json_or_text(cache_entry, content):
    cache, manifest = cache_entry
    valid_text = json.dumps(manifest)
    text = content if isinstance(content, str) and not content.startswith("{") else json.dumps(content)
    assume(text != valid_text)
    try:
        _check_manifest(cache, text, valid_text)
    finally:
        (cache.entry_dir / MANIFEST_NAME).write_text(valid_text)
    assert cache.check()[0]


def test_stale_temporaries_name_parser_never_matches_entries():
    assert cache_module._TMP_RE.match("mesh_1x1") is None and cache_module._TMP_RE.match(".tmp-mesh_1x1-hzz-p1-0123abcd") is None
