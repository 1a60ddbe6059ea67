"""Logging (``forge_kernel.log``): JSON lines or console output, request ids bound to the
context, and secrets never written."""

from __future__ import annotations

import asyncio
import io
import json

import click
import pytest
import structlog

from forge_kernel import hookimpl
from forge_kernel.log import (
    bind_request_id,
    clear_request_context,
    configure_logging,
    get_logger,
)

SECRETS = ("sk-field", "sk-header", "sk-xkey", "sk-raw", "sk-text", "hf-secret", "sk-bound")


@pytest.fixture(autouse=True)
def _reset_logging():
    """Each test configures logging itself; structlog's defaults and context come back after."""
    clear_request_context()
    yield
    clear_request_context()
    structlog.reset_defaults()


def json_lines(text: str) -> list[dict]:
    """Every stderr line, parsed (fails on a line that is not JSON)."""
    return [json.loads(line) for line in text.splitlines()]


class FakeTTY(io.StringIO):
    """A stderr that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


def test_json_lines(capsys) -> None:
    configure_logging("json")
    get_logger().info("model loaded", model="tiny", layers=3)
    get_logger().debug("not shown at info level")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "model loaded" and line["level"] == "info"
    assert (line["model"], line["layers"]) == ("tiny", 3)
    assert line["timestamp"].endswith("Z")


def test_console_output_is_readable(capsys) -> None:
    configure_logging("console", "debug")
    get_logger().debug("model loaded", model="tiny")
    err = capsys.readouterr().err
    assert "model loaded" in err and "model=tiny" in err and "debug" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err)


def test_auto_is_console_on_a_terminal_and_json_otherwise(monkeypatch) -> None:
    for stream, is_json in ((FakeTTY(), False), (io.StringIO(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        configure_logging("auto")
        get_logger().warning("disk almost full")
        text = stream.getvalue()
        assert "disk almost full" in text
        assert text.startswith("{") is is_json


def test_level_filter(capsys) -> None:
    configure_logging("json", "warning")
    get_logger().info("hidden")
    get_logger().error("shown")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["shown"]


def test_request_id_is_bound_to_the_context(capsys) -> None:
    configure_logging("json")
    log = get_logger()
    bind_request_id("req-1")
    log.info("first")
    clear_request_context()
    log.info("after")

    async def handle(request_id: str) -> None:
        bind_request_id(request_id)
        for step in range(2):
            await asyncio.sleep(0)  # the two requests interleave
            log.info("step", step=step)

    async def serve() -> None:
        await asyncio.gather(handle("req-a"), handle("req-b"))

    asyncio.run(serve())
    lines = json_lines(capsys.readouterr().err)
    assert lines[0]["request_id"] == "req-1" and "request_id" not in lines[1]
    steps = [(line["request_id"], line["step"]) for line in lines[2:]]
    assert sorted(steps) == [("req-a", 0), ("req-a", 1), ("req-b", 0), ("req-b", 1)]
    assert steps[:2] == [("req-a", 0), ("req-b", 0)]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secrets_are_never_logged(capsys, fmt: str) -> None:
    configure_logging(fmt)
    structlog.contextvars.bind_contextvars(authorization="Bearer sk-bound")
    get_logger().info(
        "request failed: Authorization: Bearer sk-text",
        api_key="sk-field",
        headers={"Authorization": "Bearer sk-header", "X-API-Key": "sk-xkey", "Host": "h"},
        raw_headers=[(b"authorization", b"Bearer sk-raw"), (b"host", b"h")],
        hf_token="hf-secret",
        max_tokens=7, prompt_tokens=3, token_ids=[1, 2],
    )
    err = capsys.readouterr().err
    leaked = [secret for secret in SECRETS if secret in err]
    assert leaked == []
    if fmt == "json":
        (line,) = json_lines(err)
        assert line["api_key"] == "***" and line["authorization"] == "***"
        assert line["headers"] == {"Authorization": "***", "X-API-Key": "***", "Host": "h"}
        assert line["event"] == "request failed: Authorization: Bearer ***"
        # counters that merely mention tokens stay readable
        assert (line["max_tokens"], line["prompt_tokens"], line["token_ids"]) == (7, 3, [1, 2])


class Chatty:
    """A plugin whose ``forge chatty`` command logs one line inside a request context."""

    @hookimpl
    def forge_register_commands(self, cli: click.Group) -> None:
        @cli.command("chatty")
        def chatty() -> None:
            bind_request_id("req-cli")
            get_logger("chatty").info("handled", api_key="sk-field")
            click.echo("done")


@pytest.mark.parametrize(("args", "env", "is_json"), [
    (["--log-format", "json"], {}, True),
    (["--log-format", "console"], {}, False),
    ([], {"FORGE_LOG_FORMAT": "console"}, False),
    ([], {}, True),  # not a terminal
])
def test_cli_log_format(forge_cli, register_plugin, args, env, is_json: bool) -> None:
    register_plugin(Chatty(), name="chatty")
    result = forge_cli(*args, "chatty", env=env)
    assert (result.exit_code, result.stdout) == (0, "done\n"), result.stderr
    assert "sk-field" not in result.stderr
    if is_json:
        (line,) = json_lines(result.stderr)
        assert (line["event"], line["request_id"], line["api_key"]) == (
            "handled", "req-cli", "***")
    else:
        assert "handled" in result.stderr and "request_id=req-cli" in result.stderr
        assert not result.stderr.startswith("{")


def test_bad_log_format_is_rejected(forge_cli) -> None:
    result = forge_cli("--log-format", "xml", "plugins")
    assert result.exit_code == 2 and "xml" in result.stderr


def test_config_file_sets_log_format_and_level(forge_cli, register_plugin, monkeypatch,
                                               tmp_path) -> None:
    register_plugin(Chatty(), name="chatty")
    config = tmp_path / "forge.toml"
    monkeypatch.setenv("FORGE_CONFIG", str(config))
    config.write_text('log_format = "console"\n')
    console = forge_cli("chatty")
    assert console.exit_code == 0 and "handled" in console.stderr
    assert not console.stderr.startswith("{")
    config.write_text('log_format = "json"\nlog_level = "warning"\n')
    quiet = forge_cli("chatty")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "done\n", "")  # info filtered
    assert forge_cli("--log-format", "console", "chatty").stderr == ""  # level still applies
    config.write_text('log_level = "loud"\n')
    bad = forge_cli("config")
    assert bad.exit_code == 2 and "log_level" in bad.stderr and "loud" in bad.stderr
