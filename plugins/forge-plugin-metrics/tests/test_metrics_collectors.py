"""``ServerMetrics`` without a server: engine observer, scrape-time engine gauges, exposition."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from forge_plugin_metrics.collectors import ServerMetrics, method_of, route_of
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from forge_kernel.engine.types import EngineStats, RequestMetrics


def scrape(metrics: ServerMetrics) -> dict[str, dict[tuple, float]]:
    """``{sample name: {sorted label items: value}}`` from the text exposition, parsed with
    prometheus_client's own parser (so the output is valid exposition format)."""
    text = generate_latest(metrics.registry).decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def finished(**overrides) -> RequestMetrics:
    values = dict(request_id="r1", prompt_tokens=5, completion_tokens=4, cached_tokens=0,
                  arrival_time=100.0, first_token_time=100.25, finish_time=100.55,
                  token_times=[100.25, 100.3, 100.4, 100.55], finish_reason="length")
    values.update(overrides)
    return RequestMetrics(**values)


def test_every_metric_is_prefixed_forge_and_exposition_parses():
    metrics = ServerMetrics(lambda: SimpleNamespace(stats=EngineStats))
    metrics.record_http("/v1/models", "GET", 200, 0.01)
    metrics.on_request_finished(finished())
    text = generate_latest(metrics.registry).decode()
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    assert names >= {"forge_http_requests", "forge_http_request_duration_seconds",
                     "forge_time_to_first_token_seconds", "forge_inter_token_latency_seconds",
                     "forge_e2e_request_latency_seconds", "forge_prompt_tokens",
                     "forge_generation_tokens", "forge_requests_finished",
                     "forge_num_requests_running", "forge_num_requests_waiting",
                     "forge_kv_cache_usage_ratio", "forge_preemptions"}
    assert all(n.startswith("forge_") for n in names)
    types = {f.name: f.type for f in families}
    assert types["forge_http_requests"] == "counter"
    assert types["forge_time_to_first_token_seconds"] == "histogram"
    assert types["forge_num_requests_running"] == "gauge"
    assert types["forge_preemptions"] == "counter"


def test_finished_request_feeds_histograms_and_token_counters():
    metrics = ServerMetrics()
    metrics.on_request_finished(finished())
    metrics.on_request_finished(finished(request_id="r2", prompt_tokens=3, completion_tokens=1,
                                         first_token_time=100.1, finish_time=100.1,
                                         token_times=[100.1], finish_reason="stop"))
    s = scrape(metrics)
    assert s["forge_time_to_first_token_seconds_count"][()] == 2
    assert s["forge_time_to_first_token_seconds_sum"][()] == pytest.approx(0.25 + 0.1)
    # 3 gaps for the first request (4 tokens), none for the second (1 token)
    assert s["forge_inter_token_latency_seconds_count"][()] == 3
    assert s["forge_inter_token_latency_seconds_sum"][()] == pytest.approx(0.3)
    assert s["forge_e2e_request_latency_seconds_count"][()] == 2
    assert s["forge_e2e_request_latency_seconds_sum"][()] == pytest.approx(0.55 + 0.1)
    assert s["forge_prompt_tokens_total"][()] == 8
    assert s["forge_generation_tokens_total"][()] == 5
    assert s["forge_requests_finished_total"] == {(("finish_reason", "length"),): 1,
                                                  (("finish_reason", "stop"),): 1}
    # a 0.25 s TTFT lands in the 0.3 bucket and not in the 0.2 one
    buckets = s["forge_time_to_first_token_seconds_bucket"]
    assert buckets[(("le", "0.2"),)] == 1 and buckets[(("le", "0.3"),)] == 2


def test_request_that_never_produced_a_token_has_no_ttft():
    metrics = ServerMetrics()
    metrics.on_request_finished(finished(completion_tokens=0, first_token_time=None,
                                         token_times=[], finish_reason="abort"))
    s = scrape(metrics)
    assert s["forge_time_to_first_token_seconds_count"][()] == 0
    assert s["forge_e2e_request_latency_seconds_count"][()] == 1
    assert s["forge_requests_finished_total"] == {(("finish_reason", "abort"),): 1}


def test_engine_gauges_are_read_at_scrape_time():
    stats = EngineStats(num_running=3, num_waiting=2, kv_usage=0.375, num_preemptions=7)
    engine = SimpleNamespace(stats=lambda: stats)
    metrics = ServerMetrics(lambda: engine)
    s = scrape(metrics)
    assert s["forge_num_requests_running"][()] == 3
    assert s["forge_num_requests_waiting"][()] == 2
    assert s["forge_kv_cache_usage_ratio"][()] == 0.375
    assert s["forge_preemptions_total"][()] == 7
    stats.num_running, stats.num_preemptions = 0, 9
    s = scrape(metrics)
    assert s["forge_num_requests_running"][()] == 0 and s["forge_preemptions_total"][()] == 9


def test_speculative_decoding_metrics():
    stats = EngineStats(spec_draft_tokens=40, spec_accepted_tokens=30, spec_rows=10)
    s = scrape(ServerMetrics(lambda: SimpleNamespace(stats=lambda: stats)))
    assert s["forge_spec_decode_draft_tokens_total"][()] == 40
    assert s["forge_spec_decode_accepted_tokens_total"][()] == 30
    assert s["forge_spec_decode_acceptance_ratio"][()] == 0.75
    assert s["forge_spec_decode_tokens_per_step"][()] == 4.0  # (30 + 10) / 10
    off = scrape(ServerMetrics(lambda: SimpleNamespace(stats=EngineStats)))
    assert off["forge_spec_decode_acceptance_ratio"][()] == 0.0


def test_no_engine_yet_still_scrapes():
    s = scrape(ServerMetrics(lambda: None))
    assert "forge_num_requests_running" not in s  # family declared, no sample
    assert s["forge_prompt_tokens_total"][()] == 0


def test_two_servers_do_not_share_a_registry():
    a, b = ServerMetrics(), ServerMetrics()
    a.record_http("/x", "GET", 200, 0.1)
    assert scrape(a)["forge_http_requests_total"]
    assert "forge_http_requests_total" not in scrape(b)


def test_http_requests_by_route_method_status():
    metrics = ServerMetrics()
    metrics.record_http("/v1/models", "GET", 200, 0.01)
    metrics.record_http("/v1/models", "GET", 200, 0.02)
    metrics.record_http("/v1/models", "GET", 401, 0.001)
    metrics.record_http("/v1/ws", "WEBSOCKET", 101, None)  # no duration for a connection
    s = scrape(metrics)
    requests = s["forge_http_requests_total"]
    assert requests[(("method", "GET"), ("route", "/v1/models"), ("status", "200"))] == 2
    assert requests[(("method", "GET"), ("route", "/v1/models"), ("status", "401"))] == 1
    assert requests[(("method", "WEBSOCKET"), ("route", "/v1/ws"), ("status", "101"))] == 1
    durations = s["forge_http_request_duration_seconds_count"]
    assert durations == {(("route", "/v1/models"),): 3}


def test_method_label_is_bounded():
    assert method_of({"type": "http", "method": "GET"}) == "GET"
    assert method_of({"type": "http", "method": "post"}) == "POST"
    assert method_of({"type": "http", "method": "BREW"}) == "OTHER"
    assert method_of({"type": "websocket"}) == "WEBSOCKET"


def test_route_of_prefers_the_router_and_falls_back_to_unmatched():
    assert route_of({"route": SimpleNamespace(path="/v1/models/{model_id:path}")}) == \
        "/v1/models/{model_id:path}"
    assert route_of({"type": "http", "path": "/nope", "method": "GET"}) == "unmatched"
