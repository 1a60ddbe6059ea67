"""``forge serve`` with LoRA adapters over the OpenAI API (openai SDK, a real server on
127.0.0.1, the tiny random Gemma 3): adapters from the config file's ``lora`` are listed with
their ``parent``, chosen per request by ``model``, answer like the merged model; an unknown
adapter is a 404 naming ``model``; a bad ``--lora`` stops the server with the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_serving import ALL, engine_for, make_adapter, run_alone

from forge_kernel.testing.server import start_server

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("http-adapters")
    return {"a": make_adapter(tiny_model, root / "a", 1, ALL),
            "b": make_adapter(tiny_model, root / "b", 2, ["q_proj", "v_proj"])}


def test_adapters_are_listed_and_chosen_per_request(tiny_model: Path, adapters, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    monkeypatch.setenv("FORGE_CPU_WEIGHTS", "exact")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'lora = "a={adapters["a"]},b={adapters["b"]}"\n')
    server = start_server(["--model", str(tiny_model)], home)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        cards = {m.id: getattr(m, "parent", None) for m in client.models.list().data}
        base = tiny_model.name
        assert cards == {base: None, f"{base}:a": base, f"{base}:b": base}
        assert client.models.retrieve(f"{base}:b").parent == base

        def complete(model: str) -> str:
            reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=10,
                                              temperature=0, extra_body={"ignore_eos": True})
            return reply.choices[0].text

        texts = {m: complete(m) for m in (base, f"{base}:a", f"{base}:b", "a")}
        assert texts["a"] == texts[f"{base}:a"]  # the bare adapter name works too
        assert len(set(texts.values())) == 3  # base, a and b answer differently
        for name in ("a", "b"):
            merged = engine_for(adapters[name] / "merged")
            want = merged.tokenizer.decode([t for t, _ in run_alone(merged, PROMPT, None)])
            assert texts[f"{base}:{name}"] == want
        with pytest.raises(openai.NotFoundError) as err:
            complete(f"{base}:nope")
        assert err.value.body["param"] == "model" and "nope" in err.value.body["message"]
    finally:
        server.stop()


def test_bad_lora_flag_stops_the_server_with_the_reason(tiny_model: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "forge_kernel", "serve", "--port", "0", "--model",
         str(tiny_model), "--lora", f"a={tmp_path / 'missing'}"],
        capture_output=True, text=True, timeout=300, env={**_env(), "FORGE_HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "no such directory or training run" in result.stderr, result.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
