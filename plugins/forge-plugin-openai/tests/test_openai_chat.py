"""Chat completions through the real ``openai`` SDK and LangChain against ``forge serve``."""

from __future__ import annotations

import httpx
from conftest import MODEL


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_default_model_exact_usage(client, server):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=_ask("What is the capital of France?"), max_tokens=8,
        temperature=0)
    resp = raw.parse()
    assert raw.headers["x-request-id"] == resp.id and resp.id.startswith("chatcmpl-")
    assert resp.object == "chat.completion" and resp.model == MODEL
    assert resp.system_fingerprint.startswith("fp_forge_") and resp.created > 1_600_000_000
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    counted = httpx.post(server.url + "/tokenize",
                         json={"messages": _ask("What is the capital of France?")}).json()
    assert resp.usage.prompt_tokens == counted["count"]
    assert 1 <= resp.usage.completion_tokens <= 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.prompt_tokens_details.cached_tokens >= 0


def test_greedy_is_deterministic_and_stream_matches(client):
    kwargs = dict(model=MODEL, messages=_ask("Name three colors."), max_tokens=10,
                  temperature=0)
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 10 or \
        last.usage.completion_tokens < 10 and finals[0].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_include_usage_has_no_usage(client):
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=_ask("Hi"), max_tokens=3, temperature=0, stream=True))
    assert all(getattr(c, "usage", None) is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason is not None


def test_n_seed_stop_and_logprobs(client):
    resp = client.chat.completions.create(
        model=MODEL, messages=_ask("Write a sentence."), max_tokens=6, n=2, seed=7,
        temperature=1.0, logprobs=True, top_logprobs=3)
    again = client.chat.completions.create(
        model=MODEL, messages=_ask("Write a sentence."), max_tokens=6, n=2, seed=7,
        temperature=1.0, logprobs=True, top_logprobs=3)
    assert [c.index for c in resp.choices] == [0, 1]
    assert [c.message.content for c in resp.choices] == [c.message.content
                                                         for c in again.choices]
    for choice in resp.choices:
        entries = choice.logprobs.content
        assert len(entries) >= 1
        for e in entries:
            assert e.logprob <= 0 and len(e.top_logprobs) == 3
            assert e.bytes == list(e.token.encode())
            assert e.top_logprobs[0].logprob >= e.top_logprobs[-1].logprob
    assert resp.usage.completion_tokens == sum(len(c.logprobs.content) for c in resp.choices)
    # a stop string never appears in the output
    text = resp.choices[0].message.content
    if len(text) > 3:
        stop = text[1:3]
        cut = client.chat.completions.create(
            model=MODEL, messages=_ask("Write a sentence."), max_tokens=6, n=1, seed=7,
            temperature=1.0, stop=[stop])
        assert stop not in cut.choices[0].message.content


def test_vllm_style_extras_accepted(client):
    resp = client.chat.completions.create(
        model=MODEL, messages=_ask("Hello"), max_tokens=5, temperature=0.7, top_p=0.9,
        presence_penalty=0.5, frequency_penalty=0.5, logit_bias={"0": -100},
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "min_tokens": 5,
                    "ignore_eos": True})
    assert resp.usage.completion_tokens == 5
    assert resp.choices[0].finish_reason == "length"


async def test_async_client_stream(async_client):
    stream = await async_client.chat.completions.create(
        model=MODEL, messages=_ask("Say something."), max_tokens=5, temperature=0,
        stream=True)
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces)
    resp = await async_client.chat.completions.create(
        model=MODEL, messages=_ask("Say something."), max_tokens=5, temperature=0)
    assert resp.choices[0].message.content == "".join(pieces)


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=server.base_url, api_key="unused", max_tokens=6,
                     temperature=0, max_retries=0)
    reply = llm.invoke("What is 2 + 2?")
    assert isinstance(reply.content, str) and reply.content
    assert reply.response_metadata["model_name"] == MODEL
    streamed = "".join(chunk.content for chunk in llm.stream("What is 2 + 2?"))
    assert streamed == reply.content
