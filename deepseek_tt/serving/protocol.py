"""Request bodies of ``/v1/completions`` and ``/v1/chat/completions`` (OpenAI's fields, vLLM's ``top_k``).

Validation happens here, so every invalid value is a 400 naming its field: numbers must be finite and in
range, text must be valid Unicode (no lone surrogates), unknown fields are refused. Parameters the engine
cannot honour are accepted only at their neutral value (a zero penalty, ``null``, an empty
``logit_bias``, ``best_of`` equal to ``n``); anything else is refused by :meth:`unsupported` with the reason.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from deepseek_tt.generator.sampling import SamplingParams

#: OpenAI allows up to 5 alternatives per token on completions and 20 on chat; vLLM 20 on both.
MAX_LOGPROBS = 20
MAX_CHOICES = 16  # n
MAX_STOP_STRINGS = 16
SEED_RANGE = (-(2**63), 2**64 - 1)


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid Unicode (a lone surrogate at character {exc.start})") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
TokenId = Annotated[int, Strict()]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = None


class _SamplingFields(BaseModel):
    """What both endpoints share."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: Text
    temperature: FiniteFloat | None = Field(None, ge=0.0, le=2.0, description="default 1.0; 0 is greedy")
    top_p: FiniteFloat | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="-1 (or 0) disables top-k, as in vLLM")
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1], description="no seed: a fresh one per request")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: Text | list[Text] | None = Field(None, max_length=MAX_STOP_STRINGS)
    n: int | None = Field(1, ge=1, le=MAX_CHOICES)
    presence_penalty: FiniteFloat | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: FiniteFloat | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: FiniteFloat | None = Field(None, gt=0.0, description="vLLM's; only 1.0 (neutral)")
    logit_bias: dict[Text, FiniteFloat] | None = None
    user: Text | None = None

    def choices(self) -> int:
        return self.n or 1

    def sampling(self, choice: int = 0) -> SamplingParams:
        """The engine's parameters for choice ``choice`` (its own seed: ``seed + choice``, or a fresh one)."""
        seed = secrets.randbits(64) if self.seed is None else (self.seed + choice) % 2**64
        temperature = 1.0 if self.temperature is None else self.temperature
        top_k = self.top_k if self.top_k is not None and self.top_k > 0 else None
        top_p = self.top_p if self.top_p is not None and self.top_p < 1.0 else None
        return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return [s for s in stops if s]

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported(self) -> tuple[str, str] | None:
        """(field, reason) of the first parameter set to a value the engine cannot honour, else None."""
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) not in (None, 0.0):
                return name, f"{name} is not supported by this server (only 0)"
        if self.repetition_penalty not in (None, 1.0):
            return "repetition_penalty", "repetition_penalty is not supported by this server (only 1.0)"
        if self.logit_bias:
            return "logit_bias", "logit_bias is not supported by this server (only null or {})"
        if self.stream_options is not None and not self.stream:
            return "stream_options", "stream_options is only allowed with stream: true"
        return None


class CompletionRequest(_SamplingFields):
    """OpenAI's completion request: a text, a list of texts, token ids, or a list of token-id lists."""

    prompt: Text | list[Text] | list[TokenId] | list[list[TokenId]]
    max_tokens: int | None = Field(16, ge=0, description="0 only with echo: the prompt's log-probabilities")
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description="alternatives reported per token")
    echo: bool | None = False
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)
    suffix: Text | None = None

    def prompts(self) -> list[str | list[int]]:
        """The prompts this request carries (a text or a token-id list each)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            return [[]]
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]

    def unsupported(self) -> tuple[str, str] | None:
        if self.best_of not in (None, self.choices()):
            return "best_of", "best_of other than n is not supported by this server"
        if self.suffix:
            return "suffix", "suffix (insertion) is not supported by this server"
        if (self.max_tokens or 0) == 0 and self.max_tokens is not None and not self.echo:
            return "max_tokens", "max_tokens 0 is only allowed with echo: true (prompt log-probabilities)"
        return super().unsupported()


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None
    name: Text | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str


class ChatCompletionRequest(_SamplingFields):
    """OpenAI's chat completion request (text messages)."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="default: the rest of the context")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Text | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    store: bool | None = None
    metadata: dict[Text, Text] | None = None
    service_tier: Text | None = None

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def logprob_count(self) -> int | None:
        """Alternatives per token (None: no log-probabilities)."""
        if not self.logprobs:
            return None
        return self.top_logprobs or 0

    def unsupported(self) -> tuple[str, str] | None:
        if self.tools:
            return "tools", "tools (function calling) are not supported by this server"
        if self.tool_choice not in (None, "none", "auto"):
            return "tool_choice", "tool_choice is not supported by this server (only none or auto without tools)"
        if self.response_format is not None and self.response_format.type != "text":
            return "response_format", "response_format other than text is not supported by this server"
        if self.top_logprobs and not self.logprobs:
            return "top_logprobs", "top_logprobs needs logprobs: true"
        return super().unsupported()


__all__ = ["ChatCompletionRequest", "ChatMessage", "CompletionRequest", "MAX_LOGPROBS"]
