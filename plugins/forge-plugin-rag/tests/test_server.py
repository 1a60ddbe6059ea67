"""The endpoints through a real ``forge serve`` on 127.0.0.1 (default model, Gemma 3 270M),
behind a static API key: auth and metrics cover the RAG routes like every other route."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forge_kernel.testing.server import ForgeServer, start_server

KEY = "rag-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMIT = 200_000
SERVER_ARGS = ["--threads", "2", "--max-model-len", "2048", "--num-blocks", "160",
               "--max-batch-size", "4"]
E17 = "The display shows E17, what happened?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeServer]:
    home: Path = tmp_path_factory.mktemp("rag-serve-home")
    srv = start_server(SERVER_ARGS, home, env={"FORGE_API_KEY": KEY,
                                               "FORGE_RAG_MAX_FILE_BYTES": str(LIMIT)})
    yield srv
    code = srv.stop()
    assert code == 0, f"forge serve exited with {code}:\n{srv.log()[-3000:]}"


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def uploaded(api, corpus) -> list[dict]:
    results = []
    for path in corpus:
        r = api.put(f"/rag/docs/documents/{path.name}", content=path.read_bytes())
        assert r.status_code == 200, r.text
        results.append(r.json())
    return results


def _error(r: httpx.Response, status: int, code: str | None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


def test_auth_covers_rag_routes(server, corpus):
    url = server.base_url
    for method, path, body in [("PUT", "/rag/docs/documents/a.md", b"# x\n\ny"),
                               ("GET", "/rag/docs/documents", None),
                               ("POST", "/rag/docs/query", b'{"query": "x"}'),
                               ("GET", "/rag/collections", None),
                               ("POST", "/embeddings", b'{"model": "all-MiniLM-L6-v2", '
                                                       b'"input": "x"}')]:
        r = httpx.request(method, url + path, content=body, timeout=30)
        _error(r, 401, "invalid_api_key")


def test_upload_list_and_unchanged_reupload(api, uploaded, corpus):
    assert [u["status"] for u in uploaded] == ["added"] * 4
    pdf = uploaded[0]["document"]
    assert (pdf["name"], pdf["kind"], pdf["pages"]) == ("pump-manual.pdf", "pdf", 6)
    again = api.put("/rag/docs/documents/pump-manual.pdf", content=corpus[0].read_bytes())
    assert again.json()["status"] == "unchanged" and again.json()["chunks_indexed"] == 0
    listed = api.get("/rag/docs/documents").json()["data"]
    assert [d["name"] for d in listed] == [p.name for p in corpus]
    collections = api.get("/rag/collections").json()["data"]
    assert collections[0]["name"] == "docs" and collections[0]["documents"] == 4


def test_query_sources_only(api, uploaded):
    r = api.post("/rag/docs/query", json={"query": "How often do I clean the strainer?",
                                          "generate": False, "k": 3})
    body = r.json()
    assert body["answer"] is None and len(body["sources"]) == 3
    top = body["sources"][0]
    assert (top["index"], top["document"], top["page"]) == (1, "pump-manual.pdf", 3)


def test_answer_from_the_served_model_cites_the_right_source(api, uploaded):
    body = api.post("/rag/docs/query", json={"query": E17, "max_tokens": 24}).json()
    assert body["sources"][0]["document"] == "pump-manual.pdf"
    assert body["sources"][0]["page"] == 4
    assert "overheat" in body["answer"].lower(), body["answer"]
    assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] > 50

    with api.stream("POST", "/rag/docs/query", json={"query": E17, "max_tokens": 24,
                                                     "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert parsed[0]["object"] == "rag.sources" and parsed[0]["sources"][0]["page"] == 4
    assert parsed[-1]["object"] == "rag.done"
    streamed = "".join(e["delta"] for e in parsed if e["object"] == "rag.delta")
    assert streamed.strip() == body["answer"]  # greedy: the same answer, in pieces


def test_bad_input_is_a_clear_4xx(api, uploaded, corpus):
    assert _error(api.put("/rag/docs/documents/deck.pptx", content=b"x"), 400,
                  "unsupported_file_type")["message"].startswith("deck.pptx: unsupported")
    big = b"#" * (LIMIT + 1)
    _error(api.put("/rag/docs/documents/big.md", content=big), 413, "file_too_large")
    chunked = api.put("/rag/docs/documents/big.md", content=iter([big[:LIMIT], b"x" * 10]))
    _error(chunked, 413, "file_too_large")  # no Content-Length: counted while streaming

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(corpus[0]))
    writer.encrypt(user_password="pw", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    _error(api.put("/rag/docs/documents/locked.pdf", content=buffer.getvalue()), 400,
           "encrypted_document")
    _error(api.put("/rag/docs/documents/cut.pdf", content=corpus[0].read_bytes()[:500]), 400,
           "unreadable_document")
    assert len(api.get("/rag/docs/documents").json()["data"]) == 4  # nothing half-indexed

    _error(api.post("/rag/nope/query", json={"query": "x"}), 404, "collection_not_found")
    _error(api.post("/rag/docs/query", content=b"{not json"), 400, "invalid_value")
    assert _error(api.post("/rag/docs/query", json={}), 400, "invalid_value")["param"] == "query"
    assert _error(api.post("/rag/docs/query", json={"query": "x", "k": "5"}), 400,
                  "invalid_value")["param"] == "k"
    assert _error(api.post("/rag/docs/query", json={"query": "x", "model": "gpt-4"}), 404,
                  "model_not_found")["param"] == "model"
    _error(api.put("/rag/bad..name!/documents/a.md", content=b"x"), 400, "invalid_name")

    api.put("/rag/empty/documents/a.md", content=b"# A\n\ntext")
    api.delete("/rag/empty/documents/a.md").raise_for_status()
    _error(api.post("/rag/empty/query", json={"query": "x"}), 400, "empty_collection")
    assert api.delete("/rag/empty").json()["deleted"] is True
    _error(api.delete("/rag/empty"), 404, "collection_not_found")
    _error(api.delete("/rag/docs/documents/ghost.md"), 404, "document_not_found")


def test_embeddings_openai_sdk(server, embedder):
    import numpy as np
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)
    texts = ["The pump must be primed with water.", "Mars is red."]
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # base64 on the wire
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    assert got.shape == (2, 384) and r.model == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(got, embedder.embed(texts), atol=1e-5)
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(embedder.count_tokens(texts))

    floats = httpx.post(server.base_url + "/embeddings", headers=AUTH, timeout=60,
                        json={"model": "sentence-transformers/all-MiniLM-L6-v2",
                              "input": "hello"}).json()
    assert len(floats["data"][0]["embedding"]) == 384
    with pytest.raises(openai.BadRequestError, match="token-id input"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="384 dimensions"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=128)


def test_embeddings_for_other_models_go_to_the_next_route(server):
    r = httpx.post(server.base_url + "/embeddings", headers=AUTH, timeout=120,
                   json={"model": "gemma3-270m", "input": "hello"})
    if r.status_code == 404 and r.json()["error"]["message"].startswith("The model `gemma3"):
        pytest.skip("no other plugin serves /v1/embeddings for the served model")
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "gemma3-270m" and len(r.json()["data"][0]["embedding"]) != 384
    _error(httpx.post(server.base_url + "/embeddings", headers=AUTH, timeout=60,
                      json={"model": "no-such-model", "input": "x"}), 404, "model_not_found")


def test_metrics_count_rag_routes(server, uploaded, api):
    api.post("/rag/docs/query", json={"query": "Mars", "generate": False})
    text = httpx.get(server.url + "/metrics", headers=AUTH, timeout=30).text
    if "forge_http_requests" not in text:
        pytest.skip("forge-plugin-metrics is not installed")
    assert 'route="/v1/rag/{collection}/query"' in text
    assert 'route="/v1/rag/{collection}/documents/{name}"' in text
