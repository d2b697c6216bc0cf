"""Schema-driven fuzzing of the running server (schemathesis, from the server's own OpenAPI schema).

Every operation of ``/openapi.json`` gets a bounded number of generated requests (valid and invalid
bodies) against a live server on a loopback port: no answer may be a 5xx, and every error must be in
OpenAI's format. The fuzzed app is the real one over the fast fake model (suites/demo/fake_model.py), so
the examples exercise validation, errors and the engine's bookkeeping, not the model's speed.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from suites.serving.conftest import SERVED_NAME

pytestmark = pytest.mark.unit

#: Examples per operation and mode (CI-sized; raise with DEEPSEEK_TT_FUZZ_EXAMPLES for a longer hunt).
MAX_EXAMPLES = int(os.environ.get("DEEPSEEK_TT_FUZZ_EXAMPLES", "40"))


def _schema(fake_server):
    return schemathesis.openapi.from_url(f"{fake_server.url}/openapi.json")


def test_no_5xx_and_openai_errors_for_generated_requests(fake_server):
    schema = _schema(fake_server)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health"}
    seen: dict[str, dict[int, int]] = {}

    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    # negative examples need something to break: the POST bodies (the GETs take no input)
    for operation, mode in [(op, m) for op in operations for m in modes if op.method.upper() == "POST" or m == modes[0]]:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            if isinstance(case.body, dict) and mode == modes[0]:
                case.body["model"] = SERVED_NAME  # a served model, so valid bodies reach the engine
                if isinstance(case.body.get("max_tokens"), int):
                    case.body["max_tokens"] = min(case.body["max_tokens"], 4)  # keep generation short
            response = case.call(base_url=fake_server.url, timeout=60)
            counts = seen.setdefault(f"{operation.method.upper()} {operation.path}", {})
            counts[response.status_code] = counts.get(response.status_code, 0) + 1
            assert response.status_code < 500, f"{response.status_code} for {case.body!r}: {response.text[:300]}"
            if response.status_code >= 400:
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["message"]

        fuzz()
    print("schemathesis status codes per operation:", seen)
    completions = seen["POST /v1/completions"]
    assert sum(completions.values()) >= min(MAX_EXAMPLES, 20)
    assert 200 in completions and 400 in completions, completions  # both valid and invalid bodies were tried
