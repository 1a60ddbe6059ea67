"""The OpenAI API of a real ``forge serve`` (default model: Gemma 3 270M Q4_K_M) on 127.0.0.1,
driven by the real ``openai`` SDK (sync, async, streaming), langchain-openai and raw HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from forge_kernel.testing.server import start_server

MODEL = "gemma3-270m"
GREEDY = {"temperature": 0.0, "max_tokens": 8}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(["--max-batch-size", "16"], tmp_path_factory.mktemp("openai-home"))
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]
    assert "Traceback" not in srv.log()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def _idle(server, timeout=20.0) -> dict:
    """Wait until the engine has nothing running or waiting and no KV held; return stats."""
    deadline = time.monotonic() + timeout
    while True:
        full = httpx.get(server.url + "/health/full").json()
        if (full["queue"]["running"] == 0 and full["queue"]["waiting"] == 0
                and full["kv_cache"]["usage"] == 0):
            return full
        assert time.monotonic() < deadline, f"engine never went idle: {full}"
        time.sleep(0.1)


def test_models(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4")
    assert info.value.code == "model_not_found"


def test_chat_non_stream_usage_and_ids(client, server):
    messages = [{"role": "user", "content": "Name a color."}]
    r = client.chat.completions.create(model=MODEL, messages=messages, **GREEDY)
    prompt = httpx.post(server.url + "/tokenize", json={"messages": messages}).json()
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.system_fingerprint.startswith("fp_forge_") and abs(r.created - time.time()) < 60
    assert r.usage.prompt_tokens == prompt["count"]
    assert r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content


def test_stream_equals_non_stream_and_reports_usage(client):
    messages = [{"role": "user", "content": "Write the alphabet."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, **GREEDY)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True},
        **GREEDY))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_stop_strings_never_leak(client):
    base = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12,
                                     temperature=0).choices[0].text
    assert "6" in base
    stopped = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12,
                                        temperature=0, stop=["6"], stream=True)
    text = "".join(c.choices[0].text for c in stopped)
    assert text == base[:base.index("6")]


def test_completions_prompt_forms_echo_and_logprobs(client, server):
    r = client.completions.create(model=MODEL, prompt=["The sky is", "Paris is in"],
                                  max_tokens=3, temperature=0, echo=True, logprobs=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text.startswith("The sky is")
    lp = r.choices[1].logprobs
    assert len(lp.tokens) == 3 and all(v <= 0 for v in lp.token_logprobs)
    assert all(len(top) == 2 for top in lp.top_logprobs)
    ids = httpx.post(server.url + "/tokenize", json={"prompt": "The sky is"}).json()["tokens"]
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=3, temperature=0)
    by_text = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=3,
                                        temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    back = httpx.post(server.url + "/detokenize", json={"tokens": ids}).json()["prompt"]
    assert back == "The sky is"


def test_n_and_seed(client):
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Pick a word."}],
                  max_tokens=6, temperature=1.0, seed=1234, n=2)
    a = client.chat.completions.create(**kwargs)
    b = client.chat.completions.create(**kwargs)
    assert len(a.choices) == 2
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]


def test_sixteen_concurrent_streams_match_solo(server, client):
    prompts = [f"Tell me about the number {i}." for i in range(4)]
    solo = {p: client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": p}], **GREEDY
    ).choices[0].message.content for p in prompts}

    async def run() -> list[tuple[str, str]]:
        aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)

        async def one(prompt: str) -> tuple[str, str]:
            stream = await aclient.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True,
                **GREEDY)
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return prompt, "".join(parts)

        return await asyncio.gather(*(one(prompts[i % 4]) for i in range(16)))

    for prompt, text in asyncio.run(run()):
        assert text == solo[prompt]
    _idle(server)


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=server.base_url, api_key="x", model=MODEL, temperature=0,
                     max_tokens=5, max_retries=0)
    reply = llm.invoke("Say something.")
    assert isinstance(reply.content, str) and reply.content
    assert reply.usage_metadata["output_tokens"] == 5


def test_embeddings(client):
    r = client.embeddings.create(model=MODEL, input=["hello world", "good morning"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 640
    assert r.usage.prompt_tokens > 0


BAD = [
    ("/v1/chat/completions", {"model": MODEL}, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
     "messages.0.role"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                              "temperature": 3}, "temperature"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                              "n": 0}, "n"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                              "max_tokens": "lots"}, "max_tokens"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                              "logit_bias": {"999999999": 5}}, "logit_bias"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "suffix": "y"}, "suffix"),
    ("/v1/completions", {"model": MODEL, "prompt": [1, 2, 99999999]}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi " * 20000}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 10**7}, None),
]


@pytest.mark.parametrize("path,body,param", BAD, ids=[f"{p}:{x}" for p, _, x in BAD])
def test_bad_input_is_a_4xx_openai_error(server, path, body, param):
    r = httpx.post(server.url + path, json=body, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None or isinstance(error["code"], str)
    if param is not None:
        assert error["param"] == param, error


def test_context_length_exceeded_message(server):
    r = httpx.post(server.url + "/v1/completions",
                   json={"model": MODEL, "prompt": "hi " * 20000}, timeout=60)
    error = r.json()["error"]
    assert r.status_code == 400 and error["code"] == "context_length_exceeded"
    assert "maximum context length" in error["message"]


def test_malformed_json_and_unknown_route(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert httpx.get(server.url + "/v1/nothing").status_code == 404
    missing = httpx.post(server.url + "/v1/chat/completions",
                         json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_disconnect_aborts_streaming_and_non_streaming(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 2000, "ignore_eos": True, "temperature": 0.8}
    with httpx.stream("POST", server.url + "/v1/chat/completions",
                      json={**body, "stream": True}) as r:
        lines = r.iter_lines()
        for _ in range(4):
            next(lines)
    # the stream was closed after a few chunks: the request must be aborted, KV freed
    _idle(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json=body, timeout=1.5)
    _idle(server)


def test_preemption_with_tiny_kv_cache(tmp_path):
    srv = start_server(["--num-blocks", "6", "--block-size", "16", "--max-model-len", "90"],
                       tmp_path / "home")
    try:
        async def run():
            aclient = openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
            return await asyncio.gather(*(aclient.completions.create(
                model=MODEL, prompt=f"Story number {i}: once upon a time", max_tokens=40,
                temperature=0, extra_body={"ignore_eos": True}) for i in range(4)))

        results = asyncio.run(run())
        assert all(r.choices[0].finish_reason == "length" for r in results)
        assert all(r.usage.completion_tokens == 40 for r in results)
        metrics = httpx.get(srv.url + "/metrics").text
        preemptions = [line for line in metrics.splitlines()
                       if line.startswith("forge_preemptions_total")]
        assert preemptions and float(preemptions[0].split()[-1]) > 0
    finally:
        assert srv.stop() == 0, srv.log()[-3000:]
