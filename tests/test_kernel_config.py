"""Configuration (``forge_kernel.config``): defaults < file < ``FORGE_*`` env < flags, with the
source of every value, per-plugin sections, and errors naming the key and expected type."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from forge_kernel import hookimpl
from forge_kernel.config import ForgeConfig, config_file, forge_home, load_config
from forge_kernel.errors import ConfigError


@dataclass
class HelloSection:
    """A plugin's section, as declared through ``forge_register_config_sections``."""

    greeting: str = "Hello"
    excited: bool = False
    retries: int | None = None
    hf_token: str | None = None
    max_tokens: int = 16


SECTIONS = {"hello": HelloSection}
FILES = {  # the same settings in each supported format
    "toml": 'host = "0.0.0.0"\nport = 9000\nthreads = 4\n[hello]\ngreeting = "Hey"\n',
    "yaml": "host: 0.0.0.0\nport: 9000\nthreads: 4\nhello:\n  greeting: Hey\n",
    "json": json.dumps({"host": "0.0.0.0", "port": 9000, "threads": 4,
                        "hello": {"greeting": "Hey"}}),
}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``FORGE_*`` variable from the caller; ``FORGE_HOME`` is an empty temporary dir."""
    for name in [n for n in os.environ if n.startswith("FORGE_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("FORGE_HOME", str(path))
    return path


def sources(config: ForgeConfig) -> dict[str, tuple[object, str]]:
    """``forge config``'s rows as ``{key: (value, source)}``."""
    return {key: (value, source) for key, value, source in config.effective()}


def test_defaults() -> None:
    config = load_config(sections={})
    assert (config.host, config.port, config.engine.backend, config.engine.model) == (
        "127.0.0.1", 8000, "cpu", None)
    assert config_file() is None
    assert {source for _, source in sources(config).values()} == {"default"}


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_file_env_and_flags_layering(home: Path, monkeypatch, fmt: str) -> None:
    path = home / f"config.{fmt}"
    path.write_text(FILES[fmt])
    monkeypatch.setenv("FORGE_PORT", "9100")
    monkeypatch.setenv("FORGE_THREADS", "8")
    config = load_config({"threads": 2, "host": None, "backend": None}, sections=SECTIONS)
    rows = sources(config)
    assert rows["host"] == ("0.0.0.0", f"file {path}")     # file over default
    assert rows["port"] == (9100, "env FORGE_PORT")         # env over file
    assert rows["threads"] == (2, "command line")           # flag over env over file
    assert rows["backend"] == ("cpu", "default")            # unset flag changes nothing
    assert rows["hello.greeting"] == ("Hey", f"file {path}")
    assert rows["hello.excited"] == (False, "default")


def test_forge_config_wins_over_forge_home(home: Path, tmp_path: Path, monkeypatch) -> None:
    (home / "config.toml").write_text("port = 1\n")
    explicit = tmp_path / "elsewhere.yml"
    explicit.write_text("port: 2\n")
    monkeypatch.setenv("FORGE_CONFIG", str(explicit))
    assert load_config(sections={}).port == 2
    monkeypatch.setenv("FORGE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml"):
        load_config(sections={})


def test_forge_home_defaults_to_dot_forge(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FORGE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert forge_home() == tmp_path / ".forge"
    (tmp_path / ".forge").mkdir()
    (tmp_path / ".forge" / "config.json").write_text('{"model": "tiny"}')
    assert load_config(sections={}).engine.model == "tiny"


def test_plugin_sections(home: Path, monkeypatch) -> None:
    (home / "config.toml").write_text(
        '[hello]\ngreeting = "Hey"\nretries = 3\n[other]\nanything = [1, 2]\n')
    monkeypatch.setenv("FORGE_HELLO_EXCITED", "yes")
    monkeypatch.setenv("FORGE_HELLO_RETRIES", "")  # empty text for an optional value: None
    config = load_config(sections=SECTIONS)
    assert config.section("hello") == HelloSection(greeting="Hey", excited=True, retries=None)
    assert config.section("other") == {"anything": [1, 2]}    # undeclared: the raw table
    assert config.section("absent") == {}
    rows = sources(config)
    assert rows["hello.excited"] == (True, "env FORGE_HELLO_EXCITED")
    assert rows["hello.retries"] == (None, "env FORGE_HELLO_RETRIES")


def test_secrets_are_masked_but_counters_are_not(monkeypatch) -> None:
    monkeypatch.setenv("FORGE_API_KEY", "sk-live-123")
    monkeypatch.setenv("FORGE_HELLO_HF_TOKEN", "hf_abc")
    config = load_config(sections=SECTIONS)
    assert config.api_key == "sk-live-123"
    rows = sources(config)
    assert rows["api_key"][0] == "***" and rows["hello.hf_token"][0] == "***"
    assert rows["hello.max_tokens"][0] == 16
    assert "sk-live-123" not in repr(config.effective())


@pytest.mark.parametrize(("fmt", "text", "env", "key", "expected"), [
    ("toml", 'port = "eighty"\n', {}, "'port' (from file ", "expected int, got 'eighty'"),
    ("yaml", "threads: true\n", {}, "'threads' (from file ", "expected int or null"),
    ("json", '{"host": 8}', {}, "'host' (from file ", "expected str, got 8"),
    ("toml", "", {"FORGE_MAX_BATCH_SIZE": "many"},
     "'max_batch_size' (from env FORGE_MAX_BATCH_SIZE)", "expected int, got 'many'"),
    ("toml", "[hello]\ngreeting = 3\n", {}, "'hello.greeting' (from file ", "expected str"),
    ("toml", "", {"FORGE_HELLO_EXCITED": "perhaps"},
     "'hello.excited' (from env FORGE_HELLO_EXCITED)", "expected bool, got 'perhaps'"),
    ("yaml", "prot: 80\n", {}, "'prot'", "unknown config key"),
    ("toml", "[hello]\nvolume = 3\n", {}, "hello.volume", "unknown key"),
    ("toml", "port = \n", {}, "config.toml", "cannot parse"),
    ("yaml", "- a list\n", {}, "config.yaml", "must be a mapping"),
])
def test_bad_values_name_the_key_and_type(home: Path, monkeypatch, fmt, text, env, key,
                                          expected) -> None:
    (home / f"config.{fmt}").write_text(text)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_config(sections=SECTIONS)
    assert key in str(info.value) and expected in str(info.value)


def test_bad_flag_value() -> None:
    with pytest.raises(ConfigError, match=r"'max_batch_size' \(from --max-batch-size\): "
                                          "expected int, got 'x'"):
        load_config({"max_batch_size": "x"}, sections={})


class HelloPlugin:
    """Declares the ``[hello]`` section, as forge-fixture-hello does."""

    @hookimpl
    def forge_register_config_sections(self, register) -> None:
        register("hello", HelloSection)


def test_forge_config_command(forge_cli, register_plugin) -> None:
    register_plugin(HelloPlugin(), name="hello")
    path = Path(os.environ["FORGE_HOME"]) / "config.yaml"
    path.write_text("port: 9000\nhello:\n  greeting: Hey\n")
    result = forge_cli("config", env={"FORGE_HELLO_EXCITED": "1", "FORGE_API_KEY": "sk-1"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"# config file: {path}"
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert rows["port"] == f"9000  (file {path})"
    assert rows["host"] == '"127.0.0.1"  (default)'
    assert rows["api_key"] == '"***"  (env FORGE_API_KEY)'
    assert rows["hello.greeting"] == f'"Hey"  (file {path})'
    assert rows["hello.excited"] == "true  (env FORGE_HELLO_EXCITED)"
    as_json = json.loads(forge_cli("config", "--json").stdout)
    assert as_json["port"] == {"value": 9000, "source": f"file {path}"}
    bad = forge_cli("config", env={"FORGE_HELLO_EXCITED": "perhaps"})
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (
        "Error: config key 'hello.excited' (from env FORGE_HELLO_EXCITED): expected bool, "
        "got 'perhaps'")
