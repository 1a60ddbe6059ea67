"""Production checks on ONE real ``forge serve`` (Gemma 3 270M) on 127.0.0.1 with
forge-plugin-auth, forge-plugin-metrics and the third-party fixture plugin forge-fixture-route
(pip-installed into a directory on the server's PYTHONPATH, discovered by its entry point).

* The auth matrix: every route (OpenAI API, ``/metrics``, FastAPI's docs, the fixture plugin's
  HTTP and WebSocket routes, ``/v1/ws`` when forge-plugin-websocket is installed, unknown paths)
  x {no key, wrong, garbage, Basic scheme, revoked, expired, right key}: every bad case is a 401
  OpenAI error (HTTP) or a handshake refused with 401 (WebSocket); the right key gets through.
  A sweep over the server's own OpenAPI schema catches routes added later.
* Keys are made with the real ``forge keys`` CLI against the server's FORGE_HOME, before and
  while it serves (the server reads the key store on every request).
* Rate limits: a ``--rpm 2`` and a ``--tpm 1`` key get 429 + Retry-After + an OpenAI error, over
  HTTP and on the WebSocket handshake, and recover when Retry-After says (the window is 60 s:
  the limits are hit when the server starts and the recovery test waits only what is left).
* ``/metrics`` parses with prometheus_client's parser and its counters move as requests finish.
* Refusals are logged by key name; no key ever appears in the server log (run at
  debug level).

Keep ``max_tokens`` tiny: the model runs on the CPU.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from forge_kernel.testing.server import ForgeServer, start_server

MODEL = "gemma3-270m"
SERVER_ARGS = ["--threads", "2", "--num-blocks", "32", "--block-size", "16",
               "--max-model-len", "512", "--max-batch-size", "4"]
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
COMPLETION = {"model": MODEL, "prompt": "Hi", "max_tokens": 1}


def _websocket_plugin_installed() -> bool:
    """forge-plugin-websocket is importable and registered (so ``forge serve`` mounts it)."""
    if importlib.util.find_spec("forge_plugin_websocket") is None:
        return False
    return any(ep.value.startswith("forge_plugin_websocket")
               for ep in importlib.metadata.entry_points(group="forge_kernel"))


WEBSOCKET_PLUGIN = _websocket_plugin_installed()
RAG_PLUGIN = importlib.util.find_spec("forge_plugin_rag") is not None
# concrete values for the schema sweep's path parameters (a collection that never exists)
PATH_PARAMS = {"{model_id}": MODEL, "{collection}": "matrix", "{name}": "notes.exe",
               "{ref}": "notes.md"}

# (method, path, JSON body, status expected with the right key)
HTTP_ROUTES: list[tuple[str, str, dict | None, int]] = [
    ("POST", "/v1/chat/completions", CHAT, 200),
    ("POST", "/v1/completions", COMPLETION, 200),
    ("GET", "/v1/models", None, 200),
    ("GET", f"/v1/models/{MODEL}", None, 200),
    ("POST", "/v1/embeddings", {"model": MODEL, "input": "Hi"}, 200),
    ("POST", "/tokenize", {"model": MODEL, "prompt": "Hi"}, 200),
    ("POST", "/detokenize", {"model": MODEL, "tokens": [2, 9259]}, 200),
    ("GET", "/v1/forge/stats", None, 200),
    ("GET", "/metrics", None, 200),  # not exempt by default (see forge-plugin-metrics README)
    ("GET", "/openapi.json", None, 200),
    ("GET", "/docs", None, 200),
    ("GET", "/docs/oauth2-redirect", None, 200),
    ("GET", "/redoc", None, 200),
    ("GET", "/fixture/echo?text=x", None, 200),  # the third-party plugin's route
    ("GET", "/no/such/route", None, 404),  # 401 before 404: no oracle for which routes exist
    ("GET", "/healthz", None, 404),  # starts like /health but is not a health probe
    ("GET", "/health-admin", None, 404),
]
WS_ROUTES = ["/fixture/ws"]
if WEBSOCKET_PLUGIN:
    HTTP_ROUTES.append(("GET", "/v1/ws/stats", None, 200))
    WS_ROUTES.append("/v1/ws")
if RAG_PLUGIN:  # forge-plugin-rag's routes, against a collection that does not exist
    HTTP_ROUTES += [
        ("GET", "/v1/rag/collections", None, 200),
        ("DELETE", "/v1/rag/matrix", None, 404),
        ("PUT", "/v1/rag/matrix/documents/notes.exe", None, 400),  # type refused before body
        ("GET", "/v1/rag/matrix/documents", None, 404),
        ("DELETE", "/v1/rag/matrix/documents/notes.md", None, 404),
        ("POST", "/v1/rag/matrix/query", {"query": "x", "generate": False}, 404),
    ]
HEALTH_ROUTES = ["/health", "/health/ready", "/health/full"]

# bad credential case -> (Authorization header built from the keys, text of error.message)
BAD_CASES = ["none", "wrong", "garbage", "basic", "revoked", "expired"]
MESSAGES = {"none": "didn't provide an API key", "wrong": "Incorrect API key",
            "garbage": "Incorrect API key", "basic": "didn't provide an API key",
            "revoked": "revoked", "expired": "expired"}


@dataclass
class Refusal:
    """A rate-limited response seen right after start-up, and when its window began."""

    response: httpx.Response
    window_start: float
    refused_at: float

    @property
    def retry_after(self) -> int:
        return int(self.response.headers["retry-after"])


@dataclass
class Production:
    server: ForgeServer
    home: Path
    keys: dict[str, str]
    static_key: str
    refusals: dict[str, Refusal] = field(default_factory=dict)
    ws_refusal: int | None = None

    def auth(self, case: str) -> dict[str, str]:
        """Headers for a credential case (``right``, ``static`` or one of BAD_CASES)."""
        right = self.keys["right"]
        value = {
            "none": None,
            "wrong": right[:-1] + ("A" if right[-1] != "A" else "B"),  # same id, other secret
            "garbage": "not-a-forge-key",
            "basic": None,
            "static": self.static_key,
        }.get(case, self.keys.get(case))
        if case == "basic":
            return {"Authorization": f"Basic {right}"}
        return {"Authorization": f"Bearer {value}"} if value else {}


def forge_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FORGE_API_KEY"}
    env["FORGE_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "forge_kernel", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=True)


def create_key(home: Path, name: str, *options: str) -> str:
    created = forge_cli(home, "keys", "create", name, *options)
    key = created.stdout.strip()
    assert key.startswith("fk_") and "\n" not in key, created.stdout
    assert key not in created.stderr
    return key


def _hit_limits(prod: Production) -> None:
    """Exhaust the rpm and tpm keys as early as possible; the recovery test waits for them."""
    url = prod.server.url
    start = time.monotonic()
    codes = [httpx.get(url + "/v1/models", headers=prod.auth("rpm"), timeout=30).status_code
             for _ in range(2)]
    assert codes == [200, 200]
    refused = httpx.get(url + "/v1/models", headers=prod.auth("rpm"), timeout=30)
    prod.refusals["rpm"] = Refusal(refused, start, time.monotonic())
    prod.ws_refusal = ws_status(prod.server, "/fixture/ws", prod.auth("rpm"))

    start = time.monotonic()
    first = httpx.post(url + "/v1/completions", json=COMPLETION, headers=prod.auth("tpm"),
                       timeout=120)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["total_tokens"] >= 2  # > --tpm 1
    tokens_recorded = time.monotonic()
    refused = httpx.post(url + "/v1/completions", json=COMPLETION, headers=prod.auth("tpm"),
                         timeout=120)
    prod.refusals["tpm"] = Refusal(refused, start, tokens_recorded)


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    import secrets

    from kernel_env import FIXTURE_PLUGINS, pip_install

    root = tmp_path_factory.mktemp("production")
    site = root / "site"
    pip_install(site, FIXTURE_PLUGINS / "forge-fixture-route")
    home = root / "home"
    keys = {"right": create_key(home, "right"),
            "revoked": create_key(home, "revoked"),
            "expired": create_key(home, "expired", "--expires", "1s"),
            "rpm": create_key(home, "rpm-limited", "--rpm", "2"),
            "tpm": create_key(home, "tpm-limited", "--tpm", "1")}
    expired_at = time.monotonic() + 1
    forge_cli(home, "keys", "revoke", "revoked")
    static_key = "static-" + secrets.token_urlsafe(24)
    python_path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    server = start_server(SERVER_ARGS, home, ready_path="/health/ready",
                          env={"PYTHONPATH": python_path, "FORGE_API_KEY": static_key,
                               "FORGE_LOG_LEVEL": "debug"})
    try:
        time.sleep(max(0.0, expired_at - time.monotonic()))
        production = Production(server, home, keys, static_key)
        _hit_limits(production)
        yield production
    finally:
        code = server.stop()
    log = server.log()
    assert code == 0, f"forge serve exited with {code}:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
    assert_no_key_in(log, production)


def assert_no_key_in(text: str, prod: Production) -> None:
    secrets_ = [*prod.keys.values(), prod.static_key, prod.auth("wrong")["Authorization"][7:]]
    for secret in secrets_:
        assert secret not in text
        assert secret.split("_")[-1] not in text  # not even the secret part


def ws_status(server: ForgeServer, path: str, headers: dict[str, str],
              message: str | None = None) -> int:
    """The handshake's HTTP status (101 when accepted); echoes ``message`` if given."""
    async def attempt() -> int:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}{path}",
                                          additional_headers=headers, open_timeout=30) as ws:
                if message is not None:
                    await ws.send(message)
                    assert await asyncio.wait_for(ws.recv(), 30) == message
                return 101
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    return asyncio.run(attempt())


def ws_refusal_body(server: ForgeServer, path: str, headers: dict[str, str]) -> bytes:
    async def attempt() -> bytes:
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}{path}",
                                          additional_headers=headers, open_timeout=30):
                pass
        return bytes(info.value.response.body or b"")

    return asyncio.run(attempt())


def assert_openai_401(response: httpx.Response, case: str) -> None:
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert error["param"] is None and MESSAGES[case] in error["message"]


def _request(prod: Production, method: str, path: str, body: dict | None,
             headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, prod.server.url + path, json=body, headers=headers,
                         timeout=120)


# -- the auth matrix --------------------------------------------------------------------------

@pytest.mark.parametrize("case", BAD_CASES)
@pytest.mark.parametrize(("method", "path", "body", "ok_status"), HTTP_ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in HTTP_ROUTES])
def test_http_bad_credentials_are_refused(prod, method, path, body, ok_status, case):
    response = _request(prod, method, path, body, prod.auth(case))
    assert_openai_401(response, case)
    assert prod.keys["right"] not in response.text


@pytest.mark.parametrize(("method", "path", "body", "ok_status"), HTTP_ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in HTTP_ROUTES])
def test_http_right_key_gets_through(prod, method, path, body, ok_status):
    response = _request(prod, method, path, body, prod.auth("right"))
    assert response.status_code == ok_status, response.text[:500]
    if path == "/fixture/echo?text=x":
        assert response.json() == {"echo": "x", "model": MODEL}


@pytest.mark.parametrize("case", BAD_CASES)
@pytest.mark.parametrize("path", WS_ROUTES)
def test_websocket_bad_credentials_refuse_the_handshake(prod, path, case):
    body = ws_refusal_body(prod.server, path, prod.auth(case))
    import json

    error = json.loads(body)["error"]
    assert error["code"] == "invalid_api_key" and MESSAGES[case] in error["message"]
    assert ws_status(prod.server, path, prod.auth(case)) == 401


@pytest.mark.parametrize("path", WS_ROUTES)
def test_websocket_right_key_is_accepted(prod, path):
    message = "ping" if path == "/fixture/ws" else None
    assert ws_status(prod.server, path, prod.auth("right"), message) == 101


def test_static_key_from_environment(prod):
    headers = prod.auth("static")
    assert httpx.get(prod.server.url + "/v1/models", headers=headers).status_code == 200
    echo = httpx.get(prod.server.url + "/fixture/echo?text=s", headers=headers)
    assert echo.json()["echo"] == "s"
    assert ws_status(prod.server, "/fixture/ws", headers, "static") == 101


@pytest.mark.parametrize("path", HEALTH_ROUTES)
@pytest.mark.parametrize("case", ["none", "garbage"])
def test_health_needs_no_key(prod, path, case):
    response = httpx.get(prod.server.url + path, headers=prod.auth(case), timeout=30)
    assert response.status_code == 200, response.text
    if path == "/health/full":
        body = response.json()
        assert body["status"] == "ready" and body["model"] == MODEL
        assert {"running", "waiting"} <= set(body["queue"]) and "usage" in body["kv_cache"]
        assert body["memory"]["rss_bytes"] > 0
        names = {p["name"] for p in body["plugins"]}
        assert {"auth", "metrics", "openai", "fixture-route"} <= names


@pytest.mark.parametrize("raw_path", ["/health/../v1/models", "/health/..%2Fv1%2Fmodels",
                                      "/health/%2e%2e/v1/models", "/health/ready/../../metrics",
                                      "//v1/models", "/v1/models/../../health"])
def test_path_tricks_do_not_reach_protected_routes(prod, raw_path):
    """Sent verbatim (http.client does not normalize paths as httpx does): a path exempt by its
    prefix never reaches a protected route, and an odd path to one still needs a key."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", prod.server.port, timeout=30)
    try:
        connection.request("GET", raw_path)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        connection.close()
    assert response.status in (401, 404), (response.status, body[:300])
    assert MODEL not in body and "forge_" not in body


def test_every_schema_route_is_in_the_matrix_and_protected(prod):
    """Routes the server itself lists (any plugin's): none is open without a key, so a route
    added later cannot slip past the matrix above."""
    schema = httpx.get(prod.server.url + "/openapi.json", headers=prod.auth("right")).json()
    tested = {path.split("?")[0] for _, path, _, _ in HTTP_ROUTES}
    seen = 0
    for template, operations in schema["paths"].items():
        path = template
        for param, value in PATH_PARAMS.items():
            path = path.replace(param, value)
        for method in operations:
            concrete = path.replace("{", "").replace("}", "")  # any value for other params
            response = httpx.request(method.upper(), prod.server.url + concrete, timeout=30)
            assert_openai_401(response, "none")
            response = httpx.request(method.upper(), prod.server.url + concrete,
                                     headers=prod.auth("expired"), timeout=30)
            assert_openai_401(response, "expired")
            seen += 1
        assert path in tested or template.startswith("/fixture"), f"{template} not in the matrix"
    assert seen >= 9


def test_keys_created_and_revoked_while_serving(prod):
    url = prod.server.url + "/v1/models"
    late = create_key(prod.home, "late")
    assert httpx.get(url, headers={"Authorization": f"Bearer {late}"}).status_code == 200
    forge_cli(prod.home, "keys", "revoke", "late")
    assert_openai_401(httpx.get(url, headers={"Authorization": f"Bearer {late}"}), "revoked")
    listing = forge_cli(prod.home, "keys", "list").stdout
    status = {line.split()[0]: line.split()[2] for line in listing.splitlines()[1:]}
    assert status == {"right": "active", "revoked": "revoked", "expired": "expired",
                      "rpm-limited": "active", "tpm-limited": "active", "late": "revoked"}
    assert all(key not in listing for key in [*prod.keys.values(), late])


# -- rate limits ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "limit"), [("rpm", "2 requests per minute"),
                                             ("tpm", "1 tokens per minute")])
def test_rate_limit_is_a_429_openai_error_with_retry_after(prod, name, limit):
    refusal = prod.refusals[name]
    response = refusal.response
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert limit in error["message"] and prod.keys[name] not in response.text
    # the window began when the first counted request (or token report) happened: Retry-After
    # is what is left of its 60 s, rounded up
    elapsed_in_window = refusal.refused_at - refusal.window_start
    assert 1 <= refusal.retry_after <= 60
    assert 60 - elapsed_in_window - 2 <= refusal.retry_after <= 61, \
        (refusal.retry_after, elapsed_in_window)


def test_rate_limit_refuses_the_websocket_handshake(prod):
    assert prod.ws_refusal == 429


def test_other_keys_are_not_limited_by_one_keys_usage(prod):
    assert httpx.get(prod.server.url + "/v1/models", headers=prod.auth("right")).status_code \
        == 200


# -- metrics ----------------------------------------------------------------------------------

def scrape(prod: Production) -> dict[tuple[str, tuple], float]:
    response = httpx.get(prod.server.url + "/metrics", headers=prod.auth("right"), timeout=30)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("forge_"), family.name
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def http_count(samples, route: str, method: str, status: int) -> float:
    key = ("forge_http_requests_total",
           (("method", method), ("route", route), ("status", str(status))))
    return samples.get(key, 0.0)


def test_metrics_move_as_requests_complete(prod):
    before = scrape(prod)
    completion = httpx.post(prod.server.url + "/v1/completions", headers=prod.auth("right"),
                            json={**COMPLETION, "max_tokens": 3, "prompt": "Once upon a time"},
                            timeout=120)
    assert completion.status_code == 200, completion.text
    usage = completion.json()["usage"]
    assert httpx.post(prod.server.url + "/v1/completions", json=COMPLETION).status_code == 401
    assert httpx.get(prod.server.url + "/fixture/echo", headers=prod.auth("right")).is_success
    assert ws_status(prod.server, "/fixture/ws", prod.auth("right"), "m") == 101
    assert ws_status(prod.server, "/fixture/ws", {}) == 401
    deadline = time.monotonic() + 10
    after = scrape(prod)
    while (after.get(("forge_generation_tokens_total", ()), 0)
           == before.get(("forge_generation_tokens_total", ()), 0)
           and time.monotonic() < deadline):  # the engine thread reports a finished request
        time.sleep(0.1)
        after = scrape(prod)

    def delta(name: str, labels: tuple = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    route = "/v1/completions"
    assert http_count(after, route, "POST", 200) - http_count(before, route, "POST", 200) == 1
    assert http_count(after, route, "POST", 401) - http_count(before, route, "POST", 401) == 1
    assert (http_count(after, "/fixture/echo", "GET", 200)
            - http_count(before, "/fixture/echo", "GET", 200)) == 1
    assert (http_count(after, "/fixture/ws", "WEBSOCKET", 101)
            - http_count(before, "/fixture/ws", "WEBSOCKET", 101)) == 1
    assert (http_count(after, "/fixture/ws", "WEBSOCKET", 401)
            - http_count(before, "/fixture/ws", "WEBSOCKET", 401)) == 1
    assert http_count(after, "/metrics", "GET", 200) > http_count(before, "/metrics", "GET", 200)
    assert delta("forge_http_request_duration_seconds_count", (("route", route),)) == 2
    assert delta("forge_prompt_tokens_total") == usage["prompt_tokens"]
    assert delta("forge_generation_tokens_total") == usage["completion_tokens"] == 3
    assert delta("forge_time_to_first_token_seconds_count") == 1
    assert delta("forge_e2e_request_latency_seconds_count") == 1
    assert delta("forge_inter_token_latency_seconds_count") == 2
    assert delta("forge_requests_finished_total", (("finish_reason", "length"),)) == 1
    assert delta("forge_e2e_request_latency_seconds_sum") > 0
    assert after[("forge_num_requests_running", ())] == 0
    assert after[("forge_num_requests_waiting", ())] == 0
    assert 0 <= after[("forge_kv_cache_usage_ratio", ())] <= 1
    assert after[("forge_preemptions_total", ())] >= 0


def test_metric_labels_are_route_templates(prod):
    samples = scrape(prod)
    routes = {dict(labels).get("route") for name, labels in samples
              if name == "forge_http_requests_total"}
    # the matrix requested /v1/models/gemma3-270m, /no/such/route, /healthz ...
    assert "/v1/models/{model_id:path}" in routes and "unmatched" in routes
    assert not any(r and (MODEL in r or r.startswith(("/no/", "/healthz"))) for r in routes)
    assert http_count(samples, "/v1/chat/completions", "POST", 401) >= len(BAD_CASES)


# -- last: logs and recovery (waits for what is left of the 60 s windows) ---------------------

def test_refusals_logged_by_key_name_and_no_key_in_the_server_log(prod):
    import json

    log = prod.server.log()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    refused = {(e.get("reason"), e.get("key_name")) for e in events
               if e.get("event") == "auth refused"}
    assert {("missing", None), ("invalid", None), ("revoked", "revoked"),
            ("expired", "expired"), ("rate_limited", "rpm-limited"),
            ("rate_limited", "tpm-limited")} <= refused
    assert_no_key_in(log, prod)


def test_rate_limits_recover_when_retry_after_says(prod):
    url = prod.server.url
    checks = {"rpm": lambda: httpx.get(url + "/v1/models", headers=prod.auth("rpm"),
                                       timeout=30),
              "tpm": lambda: httpx.post(url + "/v1/completions", json=COMPLETION,
                                        headers=prod.auth("tpm"), timeout=120)}
    for name in sorted(checks, key=lambda n: prod.refusals[n].refused_at):
        refusal = prod.refusals[name]
        allowed_at = refusal.refused_at + refusal.retry_after
        if time.monotonic() < allowed_at - 3:  # still limited shortly before Retry-After
            assert checks[name]().status_code == 429
        time.sleep(max(0.0, allowed_at - time.monotonic()) + 0.5)
        response = checks[name]()
        assert response.status_code == 200, response.text


def test_embedding_tokens_count_against_the_token_limit(prod):
    key = create_key(prod.home, "embed-tpm", "--tpm", "2")
    headers = {"Authorization": f"Bearer {key}"}
    url = prod.server.url + "/v1/embeddings"
    body = {"model": MODEL, "input": "several words make several tokens"}
    first = httpx.post(url, json=body, headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["prompt_tokens"] > 2
    refused = httpx.post(url, json=body, headers=headers, timeout=60)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
