"""Request bodies of the OpenAI API (plus vLLM-style sampling extras) and their conversion to
:class:`~forge_kernel.engine.types.SamplingParams`.

The WebSocket plugin accepts the same bodies, so both APIs validate identically. Unknown fields
are ignored (clients send ``user``, ``store``, ``metadata``...); known fields are validated
and a bad value is a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forge_kernel.engine.types import InvalidRequest, SamplingParams
from forge_plugin_protocol import tools

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    n: Annotated[int, Field(ge=1, le=16)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = None
    # vLLM-style extras
    top_k: Annotated[int, Field(ge=-1)] | None = None
    min_p: Prob | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    min_tokens: Annotated[int, Field(ge=0)] = 0
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    # structured output: OpenAI's response_format and vLLM-style guided_* (at most one)
    response_format: Any = None
    guided_json: Any = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 16 or any(not s for s in stops):
            raise ValueError("stop must be up to 16 non-empty strings")
        return value

    def sampling_params(self, max_tokens: int | None, logprobs: int | None,
                        defaults: dict[str, Any], constraint: Any = None) -> SamplingParams:
        """``constraint``: a spec already chosen (chat requests with tools), else the one
        ``response_format`` / ``guided_*`` ask for."""
        bias: dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            try:
                bias[int(key)] = float(value)
            except ValueError:
                raise InvalidRequest(f"logit_bias keys must be token ids, got {key!r}",
                                     param="logit_bias") from None
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature if self.temperature is not None
            else float(defaults.get("temperature", 1.0)),
            top_p=self.top_p if self.top_p is not None else float(defaults.get("top_p", 1.0)),
            top_k=max(0, self.top_k) if self.top_k is not None
            else int(defaults.get("top_k", 0)),
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias=bias,
            seed=self.seed,
            stop=[self.stop] if isinstance(self.stop, str) else list(self.stop or []),
            stop_token_ids=list(self.stop_token_ids or []),
            min_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
            n=self.n,
            constraint=constraint if constraint is not None else self._constraint(),
        )

    def guided(self) -> dict[str, Any]:
        """The vLLM-style ``guided_*`` fields."""
        return {"guided_json": self.guided_json, "guided_regex": self.guided_regex,
                "guided_choice": self.guided_choice, "guided_grammar": self.guided_grammar}

    def _constraint(self) -> Any:
        """The output constraint asked for, as a kernel ``ConstraintSpec`` built by
        forge-plugin-structured (the optional ``structured`` extra); ``None`` for free text."""
        guided = self.guided()
        asked = [k for k, v in guided.items() if v is not None]
        if self.response_format is None and not asked:
            return None
        try:
            from forge_plugin_structured.api import request_constraint
        except ImportError:
            if isinstance(self.response_format, dict) and \
                    self.response_format.get("type") == "text" and not asked:
                return None
            param = "response_format" if self.response_format is not None else asked[0]
            raise InvalidRequest(f"{param}: structured output needs forge-plugin-structured "
                                 f"(pip install forge-plugin-structured)", param=param,
                                 code="unsupported_parameter") from None
        return request_constraint(self.response_format, **guided)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    forge_tools: list[str] | None = None
    """Server-side tools (names registered through ``forge_register_tools``) the server runs
    itself in an agent loop (forge-plugin-openai; see docs/tool-calling.md)."""
    forge_max_tool_rounds: Annotated[int, Field(ge=1, le=16)] | None = None
    add_generation_prompt: bool = True

    def tool_setup(self, server: Any = None) -> Any:
        """The validated tool setup (``None``: no tools); see :mod:`forge_plugin_protocol.tools`."""
        return tools.tool_setup(self, server)

    def prompt_ids(self, tokenizer: Any, setup: Any = None) -> list[list[int]]:
        """The one prompt: messages rendered with the model's chat template (through the tool
        format when the request has tools or tool turns), then tokenized (the template already
        holds BOS, so no special tokens are added)."""
        messages = [m.model_dump(exclude_none=True) for m in self.messages]
        if setup is not None or tools.uses_tools(self):
            text = tools.render(tokenizer, messages, setup, self.add_generation_prompt)
        else:
            text = tokenizer.apply_chat_template(messages,
                                                 add_generation_prompt=self.add_generation_prompt)
        return [tokenizer.encode(text, add_special_tokens=False)]

    def to_params(self, defaults: dict[str, Any], setup: Any = None) -> SamplingParams:
        """Sampling parameters; ``setup`` (from :meth:`tool_setup`) adds the tool-call
        constraint (computed here when not given)."""
        if setup is None and tools.uses_tools(self):
            setup = self.tool_setup()
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs=true", param="top_logprobs")
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        spec = (tools.constraint(setup, self.response_format, self.guided())
                if setup is not None else None)
        return self.sampling_params(self.max_completion_tokens or self.max_tokens, logprobs,
                                    defaults, spec)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def to_params(self, defaults: dict[str, Any]) -> SamplingParams:
        if self.suffix:
            raise InvalidRequest("suffix (fill-in-the-middle) is not supported", param="suffix",
                                 code="unsupported_parameter")
        if self.best_of is not None and self.best_of != self.n:
            raise InvalidRequest("best_of is not supported (must equal n)", param="best_of",
                                 code="unsupported_parameter")
        return self.sampling_params(self.max_tokens, self.logprobs, defaults)

    def prompt_ids(self, tokenizer: Any) -> list[list[int]]:
        """Each prompt as token ids (text is tokenized with the model's special tokens)."""
        return [tokenizer.encode(p) if isinstance(p, str) else p for p in self.prompts()]

    def prompts(self) -> list[str | list[int]]:
        """Each prompt as text or token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise InvalidRequest("prompt must not be empty", param="prompt")
        if all(isinstance(x, int) for x in p):
            return [list(p)]
        if all(isinstance(x, str) for x in p) or all(isinstance(x, list) for x in p):
            if any(len(x) == 0 for x in p):
                raise InvalidRequest("prompt must not contain empty prompts", param="prompt")
            return list(p)
        raise InvalidRequest("prompt must be a string, a list of strings, a list of token ids "
                             "or a list of token-id lists", param="prompt")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[int]
