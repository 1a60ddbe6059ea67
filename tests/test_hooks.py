"""Every hook spec, exercised the way a third-party plugin uses it.

Registration hooks: small plugin objects registered with ``forge_kernel.testing``'s
``register_plugin`` into a fresh host, then the kernel code that consumes each kind
(``build_engine``, ``open_model_source``, ``build_app``, the ``forge`` CLI, ``load_config``)
must use what they registered. Lifecycle hooks: the fixture plugin
``tests/plugins/forge-fixture-lifecycle`` is pip-installed into a temporary site and a real
``forge serve`` (a tiny GGUF model) runs with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest

from forge_kernel import hookimpl
from forge_kernel.config import load_config
from forge_kernel.errors import (
    ConfigError,
    DuplicateImplementationError,
    MissingPluginError,
    PluginError,
    UnknownImplementationError,
)
from forge_kernel.interfaces.architecture import ModelArchitecture
from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.endpoint import Endpoint, Middleware
from forge_kernel.interfaces.kv_cache import KVCache, KVCacheSpec
from forge_kernel.interfaces.loader import ModelConfig, ModelSource, WeightLoader, WeightTensor
from forge_kernel.interfaces.model import CausalLM
from forge_kernel.interfaces.quantizer import Quantizer
from forge_kernel.interfaces.scheduler import Scheduler, SchedulerOutput
from forge_kernel.interfaces.tool import Tool
from forge_kernel.interfaces.trainer import Trainer
from forge_kernel.registry import KINDS
from forge_kernel.testing.conformance.endpoint import EndpointConformance, MiddlewareConformance
from forge_kernel.testing.conformance.quantizer import QuantizerConformance
from forge_kernel.testing.conformance.tool import ToolConformance
from forge_kernel.testing.conformance.trainer import TrainerConformance

REGISTRATION_HOOKS = {
    "forge_register_backends": "backend",
    "forge_register_schedulers": "scheduler",
    "forge_register_kv_caches": "kv_cache",
    "forge_register_quantizers": "quantizer",
    "forge_register_trainers": "trainer",
    "forge_register_tools": "tool",
    "forge_register_endpoints": "endpoint",
    "forge_register_model_architectures": "model_architecture",
    "forge_register_weight_loaders": "weight_loader",
    "forge_register_constraint_compilers": "constraint",
    "forge_register_speculators": "speculator",
}


def one_hook_plugin(hook_name: str, impl_name: str, factory: Any) -> ModuleType:
    """A plugin module implementing only ``hook_name``, registering ``impl_name``."""

    def implementation(register):
        register(impl_name, factory)

    module = ModuleType(f"{hook_name}_plugin")
    setattr(module, hook_name, hookimpl(implementation))
    return module


# -- every registration hook fills its own kind ---------------------------------------------

def test_registration_hook_table_matches_the_registry():
    assert {kind: hook for hook, kind in REGISTRATION_HOOKS.items()} == KINDS


@pytest.mark.parametrize(("hook_name", "kind"), sorted(REGISTRATION_HOOKS.items()))
def test_each_registration_hook_fills_its_kind(hook_name, kind, register_plugin, forge_host,
                                               forge_hook_recorder, forge_cli):
    status = register_plugin(one_hook_plugin(hook_name, f"my-{kind}", dict), name="third-party")
    assert status.kinds == [kind] and status.hooks == [hook_name]
    implementation = forge_host.registry.get(kind, f"my-{kind}")
    assert implementation.plugin == "third-party" and implementation.factory is dict
    for other in set(KINDS) - {kind}:
        assert forge_host.registry.names(other) == []
    (call,) = forge_hook_recorder.of(hook_name)
    assert call.plugins == ["third-party"] and set(call.kwargs) == {"register"}
    shown = json.loads(forge_cli("plugins", "--json").stdout)
    assert shown == [{"name": "third-party", "distribution": "-", "version": "-",
                      "status": "loaded", "kinds": [kind], "hooks": [hook_name], "error": None}]


def test_same_name_same_kind_from_two_plugins_is_an_error(register_plugin, forge_host):
    register_plugin(one_hook_plugin("forge_register_tools", "echo", dict), name="first")
    with pytest.raises(DuplicateImplementationError, match="'first' and plugin 'second'"):
        register_plugin(one_hook_plugin("forge_register_tools", "echo", list), name="second")
    assert forge_host.pm.get_plugin("second") is None  # rolled back
    assert forge_host.registry.get("tool", "echo").plugin == "first"


def test_same_name_in_two_kinds_is_fine(register_plugin, forge_host):
    register_plugin(one_hook_plugin("forge_register_kv_caches", "fast", dict), name="a")
    register_plugin(one_hook_plugin("forge_register_schedulers", "fast", dict), name="b")
    assert forge_host.registry.names("kv_cache") == forge_host.registry.names("scheduler")


def test_a_factory_must_be_callable(register_plugin, forge_host):
    with pytest.raises(PluginError, match="not callable"):
        register_plugin(one_hook_plugin("forge_register_backends", "bad", 42), name="bad")
    assert forge_host.registry.names("backend") == []


# -- backends, KV caches, schedulers, weight loaders, architectures: build_engine -------------

class FakeBackend(Backend):
    name = "fake"
    device = "cpu"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return True, ""

    @property
    def compute_dtype(self):
        import torch

        return torch.float32

    def linear(self, weight, bias=None):
        raise NotImplementedError

    def embedding(self, weight):
        raise NotImplementedError

    def dense(self, weight):
        raise NotImplementedError


class FakeCache(KVCache):
    name = "fake"
    created: list[KVCacheSpec] = []

    def __init__(self, spec: KVCacheSpec, config: Any) -> None:
        self.spec, self.config = spec, config
        FakeCache.created.append(spec)

    def capacity_tokens(self) -> int:
        return 32

    def free_tokens(self) -> int:
        return 32

    def can_allocate(self, seq_id: int, total_tokens: int) -> bool:
        return total_tokens <= 32

    def allocate(self, seq_id: int, total_tokens: int) -> None:
        pass

    def free(self, seq_id: int) -> None:
        pass

    def usage(self) -> float:
        return 0.0

    def attend(self, layer, q, k, v, batch, *, scale, sliding_window=None, logit_softcap=None):
        raise NotImplementedError


class FakeScheduler(Scheduler):
    name = "fake"

    def __init__(self, config, kv_cache) -> None:
        self.config, self._kv_cache = config, kv_cache

    def add(self, seq) -> None:
        pass

    def schedule(self) -> SchedulerOutput:
        return SchedulerOutput()

    def finish(self, seq_id: int) -> None:
        pass

    def abort(self, seq_id: int) -> None:
        pass

    def num_waiting(self) -> int:
        return 0

    def num_running(self) -> int:
        return 0

    @property
    def kv_cache(self) -> KVCache:
        return self._kv_cache


class FakeLoader(WeightLoader):
    """Opens ``*.fake`` files whose text is the architecture name."""

    name = "fake"

    def can_load(self, path: Path) -> bool:
        return path.suffix == ".fake"

    def load(self, path: Path) -> ModelSource:
        config = ModelConfig(architecture=path.read_text().strip(), vocab_size=8, hidden_size=4,
                             intermediate_size=8, num_layers=1, num_heads=1, num_kv_heads=1,
                             head_dim=4, context_length=64)
        return ModelSource(path=path, format="fake", config=config, tokenizer=None, tensors={})


class FakeModel(CausalLM):
    def __init__(self, config: ModelConfig, backend: Backend) -> None:
        self.config, self.backend = config, backend

    def kv_cache_spec(self) -> KVCacheSpec:
        return KVCacheSpec(num_layers=1, num_kv_heads=1, head_dim=4,
                           dtype=self.backend.compute_dtype)

    def forward(self, batch, kv_cache):
        raise NotImplementedError


class FakeArchitecture(ModelArchitecture):
    name = "fakenet"

    def build(self, source: ModelSource, backend: Backend) -> CausalLM:
        return FakeModel(source.config, backend)


class EnginePieces:
    """A third-party plugin providing every piece ``build_engine`` resolves by name."""

    @hookimpl
    def forge_register_backends(self, register):
        register("fake", FakeBackend)

    @hookimpl
    def forge_register_kv_caches(self, register):
        register("fake", FakeCache)

    @hookimpl
    def forge_register_schedulers(self, register):
        register("fake", FakeScheduler)

    @hookimpl
    def forge_register_weight_loaders(self, register):
        register("fake", FakeLoader)

    @hookimpl
    def forge_register_model_architectures(self, register):
        register("fakenet", FakeArchitecture)


@pytest.fixture()
def fake_model_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.fake"
    path.write_text("fakenet\n")
    return path


def test_build_engine_uses_registered_implementations_by_name(register_plugin, fake_model_file):
    pytest.importorskip("torch")
    from forge_kernel.engine.builder import build_engine
    from forge_kernel.engine.config import EngineConfig

    register_plugin(EnginePieces(), name="pieces")
    FakeCache.created.clear()
    engine = build_engine(EngineConfig(model=fake_model_file, backend="fake", kv_cache="fake",
                                       scheduler="fake", threads=3, max_batch_size=2,
                                       model_name="tiny"))
    # weight loader chosen by can_load, architecture by the file's architecture string
    assert isinstance(engine.model, FakeModel) and engine.model_config.architecture == "fakenet"
    # backend factory(threads=...)
    assert isinstance(engine.model.backend, FakeBackend) and engine.model.backend.threads == 3
    # KV cache factory(spec, config), created again with max_model_len capped to its capacity
    assert isinstance(engine.kv_cache, FakeCache)
    assert [spec.max_model_len for spec in FakeCache.created] == [64, 32]
    assert engine.max_model_len == 32
    # scheduler factory(config, kv_cache)
    assert isinstance(engine.scheduler, FakeScheduler)
    assert engine.scheduler.kv_cache is engine.kv_cache
    assert engine.scheduler.config.max_batch_size == 2


def test_unknown_or_missing_implementation_names_the_choices(register_plugin, fake_model_file):
    pytest.importorskip("torch")
    from forge_kernel.engine.builder import build_engine
    from forge_kernel.engine.config import EngineConfig

    register_plugin(EnginePieces(), name="pieces")
    with pytest.raises(UnknownImplementationError, match=r"no backend named 'gpu' .*: fake\)"):
        build_engine(EngineConfig(model=fake_model_file, backend="gpu"))
    with pytest.raises(MissingPluginError, match="pip install forge-plugin-kv-naive"):
        build_engine(EngineConfig(model=fake_model_file, backend="fake", kv_cache="naive"))


def test_weight_loader_is_sniffed_and_architecture_comes_from_the_file(register_plugin,
                                                                       tmp_path):
    from forge_kernel.errors import ModelFormatError
    from forge_kernel.modeling import build_causal_lm, open_model_source

    register_plugin(EnginePieces(), name="pieces")
    foreign = tmp_path / "weights.bin"
    foreign.write_bytes(b"\0" * 16)
    with pytest.raises(ModelFormatError, match=r"weights\.bin.*tried: fake"):
        open_model_source(foreign)
    other = tmp_path / "other.fake"
    other.write_text("llama")
    source = open_model_source(other)
    assert source.format == "fake"
    with pytest.raises(ModelFormatError, match="'llama' is not supported.*fakenet"):
        build_causal_lm(source, FakeBackend())


# -- endpoints and middlewares: forge serve's application --------------------------------------

class HelloRoute(Endpoint):
    name = "hello-route"

    def mount(self, app, server) -> None:
        @app.get("/hello")
        def hello() -> dict:
            return {"model": server.model_name}


class StampMiddleware(Middleware):
    """Adds ``x-stamp: yes`` to every HTTP response."""

    name = "stamp"
    order = 50

    def wrap(self, app, server):
        async def stamped(scope, receive, send):
            async def send_stamped(message):
                if message["type"] == "http.response.start":
                    headers = [*message.get("headers", []), (b"x-stamp", b"yes")]
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, send_stamped if scope["type"] == "http" else send)

        return stamped


class RoutesPlugin:
    @hookimpl
    def forge_register_endpoints(self, register):
        register("hello-route", HelloRoute)
        register("stamp", StampMiddleware)


def test_endpoints_are_mounted_and_middlewares_wrap_them(register_plugin, forge_host,
                                                         forge_hook_recorder):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from forge_kernel.server import ServerContext, build_app

    register_plugin(RoutesPlugin(), name="routes")
    assert forge_hook_recorder.of("forge_register_endpoints")[0].plugins == ["routes"]
    context = ServerContext(engine=None, model_name="tiny", config=None,
                            registry=forge_host.registry, host=forge_host)
    response = TestClient(build_app(context)).get("/hello")
    assert response.status_code == 200 and response.json() == {"model": "tiny"}
    assert response.headers["x-stamp"] == "yes"


def test_an_endpoint_factory_returning_something_else_is_named(register_plugin, forge_host):
    pytest.importorskip("fastapi")
    from forge_kernel.server import ServerContext, build_app

    register_plugin(one_hook_plugin("forge_register_endpoints", "odd", dict), name="odd-plugin")
    context = ServerContext(None, "tiny", None, forge_host.registry, forge_host)
    with pytest.raises(TypeError, match="plugin 'odd-plugin' registered endpoint 'odd'"):
        build_app(context)


class TestHelloRouteConformance(EndpointConformance):
    paths = ["/hello"]

    @pytest.fixture()
    def endpoint(self):
        return HelloRoute()


class TestStampMiddlewareConformance(MiddlewareConformance):
    @pytest.fixture()
    def middleware(self):
        return StampMiddleware()


# -- tools, quantizers, trainers --------------------------------------------------------------

class EchoTool(Tool):
    name = "echo"
    description = "Return the text unchanged."
    parameters = {"type": "object", "properties": {"text": {"type": "string"}},
                  "required": ["text"]}

    def __call__(self, text: str = "") -> str:
        return text


class ManifestQuantizer(Quantizer):
    """Writes a JSON manifest of the tensors it would quantize (a toy output format)."""

    name = "manifest"
    types = ("Q8_0", "Q4_0")

    def quantize(self, source, output, qtype, progress=None):
        if qtype not in self.types:
            raise ValueError(f"unsupported type {qtype!r}; supported: {', '.join(self.types)}")
        names = sorted(source.tensors)
        for done in range(1, len(names) + 1):
            if progress is not None:
                progress(done, len(names))
        partial = Path(f"{output}.partial")
        partial.write_text(json.dumps({"qtype": qtype, "tensors": names}))
        partial.replace(output)
        return Path(output)


class CountingTrainer(Trainer):
    """"Trains" by counting the data set's lines; writes the count."""

    name = "count"

    def train(self, model, data, output, options, progress=None):
        lines = Path(data).read_text().splitlines()
        steps = int(options.get("steps", 2))
        for step in range(1, steps + 1):
            if progress is not None:
                progress(step, steps, {"loss": 1.0 / step})
        Path(output).mkdir(parents=True, exist_ok=True)
        (Path(output) / "count.txt").write_text(str(len(lines)))
        return Path(output)


class ExtrasPlugin:
    @hookimpl
    def forge_register_tools(self, register):
        register("echo", EchoTool)

    @hookimpl
    def forge_register_quantizers(self, register):
        register("manifest", ManifestQuantizer)

    @hookimpl
    def forge_register_trainers(self, register):
        register("count", CountingTrainer)


def test_tools_quantizers_and_trainers_land_in_the_registry(register_plugin, forge_host,
                                                            forge_cli):
    status = register_plugin(ExtrasPlugin(), name="extras")
    assert status.kinds == ["quantizer", "trainer", "tool"]
    registry = forge_host.registry
    assert registry.create("tool", "echo")(text="hi") == "hi"
    assert isinstance(registry.create("quantizer", "manifest"), ManifestQuantizer)
    assert isinstance(registry.create("trainer", "count"), CountingTrainer)
    assert "quantizer, trainer, tool" in forge_cli("plugins").stdout


class TestEchoToolConformance(ToolConformance):
    example_arguments = {"text": "hello"}

    @pytest.fixture()
    def tool(self):
        return EchoTool()


class TestManifestQuantizerConformance(QuantizerConformance):
    @pytest.fixture()
    def quantizer(self):
        return ManifestQuantizer()

    @pytest.fixture()
    def source(self, tmp_path):
        import numpy as np

        source = FakeLoader().load(_write(tmp_path / "m.fake", "fakenet"))
        for name in ("token_embd.weight", "output_norm.weight"):
            source.tensors[name] = WeightTensor(name, (2, 4), "F32",
                                                np.zeros((2, 4), np.float32), _no_decoder)
        return source


class TestCountingTrainerConformance(TrainerConformance):
    options = {"steps": 3}

    @pytest.fixture()
    def trainer(self):
        return CountingTrainer()

    @pytest.fixture()
    def model(self, tmp_path):
        return _write(tmp_path / "m.fake", "fakenet")

    @pytest.fixture()
    def data(self, tmp_path):
        return _write(tmp_path / "data.txt", "one\ntwo\n")


def _no_decoder(weight):
    raise NotImplementedError


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- commands ---------------------------------------------------------------------------------

class GreetCommand:
    @hookimpl
    def forge_register_commands(self, cli):
        @cli.command("greet")
        @click.argument("name")
        def greet(name: str) -> None:
            """Greet NAME."""
            click.echo(f"hi {name}")


class BrokenCommands:
    @hookimpl
    def forge_register_commands(self, cli):
        raise RuntimeError("no commands today")


def test_plugin_commands_join_the_forge_group(register_plugin, forge_cli):
    register_plugin(GreetCommand(), name="greeter")
    result = forge_cli("greet", "Ada")
    assert (result.exit_code, result.stdout) == (0, "hi Ada\n")
    assert "Greet NAME." in forge_cli("--help").stdout


def test_a_plugin_failing_to_add_commands_does_not_break_the_others(register_plugin, forge_cli):
    register_plugin(BrokenCommands(), name="broken-commands")
    register_plugin(GreetCommand(), name="greeter")
    result = forge_cli("greet", "Ada")
    assert (result.exit_code, result.stdout) == (0, "hi Ada\n")
    assert ("forge: plugin 'broken-commands' failed to add its commands: RuntimeError: "
            "no commands today") in result.stderr


def test_without_its_plugin_a_feature_command_says_what_to_install(forge_cli):
    result = forge_cli("serve")
    assert result.exit_code == 2 and "pip install forge-plugin-openai" in result.stderr


def test_plugin_commands_take_precedence_over_built_in_names(register_plugin, forge_cli):
    class ServePlugin:
        @hookimpl
        def forge_register_commands(self, cli):
            @cli.command("serve")
            def serve() -> None:
                click.echo("my serve")

    register_plugin(ServePlugin(), name="my-serve")
    assert forge_cli("serve").stdout == "my serve\n"


# -- config sections --------------------------------------------------------------------------

@dataclass(slots=True)
class GreetSettings:
    shout: bool = False
    times: int = 1
    prefix: str | None = None


class GreetConfig:
    @hookimpl
    def forge_register_config_sections(self, register):
        register("greet", GreetSettings)


@pytest.fixture()
def clean_config_env(monkeypatch, tmp_path):
    """No config file and no ``FORGE_*`` settings from the environment running the tests."""
    for name in [n for n in os.environ if n.startswith("FORGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FORGE_HOME", str(tmp_path / "forge-home"))


def test_config_section_values_come_from_file_and_env(register_plugin, forge_host,
                                                      clean_config_env, monkeypatch, tmp_path):
    register_plugin(GreetConfig(), name="greet-config")
    assert forge_host.config_sections["greet"] == (GreetSettings, "greet-config")
    config_path = tmp_path / "config.toml"
    config_path.write_text("[greet]\ntimes = 2\nprefix = 'Dr.'\n")
    monkeypatch.setenv("FORGE_CONFIG", str(config_path))
    monkeypatch.setenv("FORGE_GREET_SHOUT", "yes")
    assert load_config().section("greet") == GreetSettings(shout=True, times=2, prefix="Dr.")
    monkeypatch.setenv("FORGE_GREET_TIMES", "3")
    assert load_config().section("greet").times == 3


def test_config_section_values_are_type_checked(register_plugin, clean_config_env, monkeypatch,
                                                tmp_path):
    register_plugin(GreetConfig(), name="greet-config")
    monkeypatch.setenv("FORGE_GREET_TIMES", "many")
    with pytest.raises(ConfigError, match=r"'greet\.times' \(from env FORGE_GREET_TIMES\): "
                                          r"expected int, got 'many'"):
        load_config()
    monkeypatch.delenv("FORGE_GREET_TIMES")
    config_path = tmp_path / "config.toml"
    config_path.write_text("[greet]\nloud = true\n")
    monkeypatch.setenv("FORGE_CONFIG", str(config_path))
    with pytest.raises(ConfigError, match=r"unknown key greet\.loud"):
        load_config()


def test_forge_config_shows_plugin_sections_and_sources(register_plugin, forge_cli):
    register_plugin(GreetConfig(), name="greet-config")
    out = forge_cli("config", env={"FORGE_GREET_TIMES": "4"}).stdout
    assert "greet.times" in out and "4  (env FORGE_GREET_TIMES)" in out
    assert "greet.shout" in out and "false  (default)" in out


def test_a_section_declared_twice_fails_the_second_plugin(register_plugin, forge_host):
    register_plugin(GreetConfig(), name="first")
    with pytest.raises(DuplicateImplementationError, match="'first' and plugin 'second'"):
        register_plugin(GreetConfig(), name="second")
    assert forge_host.config_sections["greet"][1] == "first"


def test_a_section_must_be_a_dataclass(register_plugin, forge_host):
    with pytest.raises(PluginError, match="is not a dataclass"):
        register_plugin(one_hook_plugin("forge_register_config_sections", "x", dict), name="x")
    assert forge_host.config_sections == {}


# -- lifecycle: forge_configure, forge_startup, forge_shutdown around a real forge serve -------

@pytest.fixture(scope="module")
def lifecycle_site(tmp_path_factory) -> Path:
    """A directory where forge-fixture-lifecycle is pip-installed (its entry point included)."""
    from kernel_env import FIXTURE_PLUGINS, pip_install

    target = tmp_path_factory.mktemp("lifecycle") / "site"
    pip_install(target, FIXTURE_PLUGINS / "forge-fixture-lifecycle")
    return target


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama as GGUF (serves in seconds)."""
    testing = pytest.importorskip("forge_plugin_models.testing")
    pytest.importorskip("forge_plugin_openai")
    return testing.write_gguf(testing.make_hf("llama"),
                              tmp_path_factory.mktemp("model") / "tiny-llama.gguf")


def _env(site: Path, log: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "FORGE_LIFECYCLE_LOG": str(log), **extra}


def _events(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _serve_until_exit(model: Path, env: dict[str, str], home: Path) -> subprocess.CompletedProcess:
    """``forge serve`` that is expected to exit by itself (start refused)."""
    from forge_kernel.testing.server import free_port

    full = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    full.update(env, FORGE_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "forge_kernel", "serve", "--model", str(model),
                           "--port", str(free_port())], env=full, capture_output=True,
                          text=True, timeout=300)


def test_lifecycle_hooks_run_around_forge_serve(forge_server, lifecycle_site, tiny_model,
                                                tmp_path):
    import httpx

    log = tmp_path / "events.jsonl"
    server = forge_server("--model", str(tiny_model), "--kv-cache", "naive",
                          env=_env(lifecycle_site, log))
    configure, startup = _events(log)
    # forge_configure got the effective ForgeConfig (flags applied, plugin section read)
    assert configure == {"event": "configure", "model": str(tiny_model), "kv_cache": "naive"}
    # forge_startup got the ServerContext, before the server accepted work
    assert startup == {"event": "startup", "model_name": "tiny-llama",
                       "components": {"backend": "cpu", "kv_cache": "naive",
                                      "scheduler": "continuous"}}
    assert httpx.get(server.base_url + "/models").status_code == 200
    assert server.stop() == 0
    # forge_shutdown: once, after the server stopped
    assert _events(log)[2:] == [{"event": "shutdown", "model_name": "tiny-llama"}]


def test_forge_startup_can_refuse_start(lifecycle_site, tiny_model, tmp_path):
    log = tmp_path / "events.jsonl"
    result = _serve_until_exit(tiny_model, _env(lifecycle_site, log,
                                                FORGE_LIFECYCLE_REFUSE="maintenance window"),
                               tmp_path / "home")
    assert result.returncode == 1, result.stderr
    assert "Error: plugin 'lifecycle' refused start-up: maintenance window" in result.stderr
    # plugins whose start-up ran get their shutdown hook, so they can release what they took
    assert [e["event"] for e in _events(log)] == ["configure", "startup", "shutdown"]


def test_forge_configure_error_stops_serve_before_anything_is_built(lifecycle_site, tiny_model,
                                                                    tmp_path):
    log = tmp_path / "events.jsonl"
    result = _serve_until_exit(tiny_model, _env(lifecycle_site, log, FORGE_LIFECYCLE_REFUSE=" "),
                               tmp_path / "home")
    assert result.returncode == 1, result.stderr
    assert "Error: lifecycle.refuse must be a reason, not blank" in result.stderr
    assert _events(log) == []
    assert "forge serving" not in result.stderr
