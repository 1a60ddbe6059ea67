"""Run spec: YAML, dicts and CLI flags build the same validated spec; errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from forge_plugin_train.spec import RunSpec

from forge_kernel.errors import ConfigError


def test_yaml_dict_and_overrides_agree(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("{}\n")
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text("method: dpo\ndata: {path: d.jsonl, max_length: 64}\n"
                         "optimizer: {lr: 1e-3, betas: [0.8, 0.9]}\nlora: {enabled: true}\n")
    from_file = RunSpec.from_file(spec_file, overrides={"steps": 7})
    from_dict = RunSpec.from_dict({"method": "dpo", "steps": 7, "lora": {"enabled": True}},
                                  overrides={"data.path": str((tmp_path / "d.jsonl").resolve()),
                                             "data.max_length": 64, "optimizer.lr": "1e-3",
                                             "optimizer.betas": [0.8, 0.9]})
    assert from_file.to_dict() == from_dict.to_dict()
    assert from_file.optimizer.lr == 1e-3 and from_file.optimizer.betas == (0.8, 0.9)
    assert from_file.uses_lora and RunSpec.from_dict(from_file.to_dict()) == from_file


@pytest.mark.parametrize(("raw", "message"), [
    ({"method": "ppo"}, "field 'method' is 'ppo'"),
    ({"optimizer": {"lrr": 1}}, "unknown field 'optimizer.lrr'"),
    ({"steps": "many"}, "field 'steps' must be an integer"),
    ({"steps": 0}, "field 'steps' must be at least 1"),
    ({"optimizer": {"lr": -1}}, "field 'optimizer.lr'"),
    ({"data": {"eval_fraction": 1.5}}, "data.eval_fraction"),
    ({"method": "dpo", "data": {"packing": True}}, "data.packing"),
    ({"lora": []}, "field 'lora' must be a mapping"),
])
def test_bad_fields_are_named(raw: dict, message: str) -> None:
    raw = {**raw, "data": {"path": "x.jsonl", **raw.get("data", {})}}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        RunSpec.from_dict(raw, source="my.yaml")


def test_missing_data_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.path' is required"):
        RunSpec.from_dict({})
    with pytest.raises(ConfigError, match="run spec not found"):
        RunSpec.from_file(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunSpec.from_file(tmp_path / "bad.yaml")


def test_cli_flags_build_the_spec_file_would(tmp_path: Path, monkeypatch) -> None:
    """``forge train`` flags are overrides of the same spec (checked without training)."""
    from click.testing import CliRunner
    from forge_plugin_train import api, cli

    seen: list[RunSpec] = []
    monkeypatch.setattr(api, "start", lambda spec, progress=True: seen.append(spec) or
                        type("R", (), {"id": "x", "state": "queued", "info": {}})())
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    (tmp_path / "run.yaml").write_text(f"data: {{path: {data}}}\nsteps: 3\n"
                                       "optimizer: {lr: 0.01}\nlora: {r: 4}\n")
    runner = CliRunner()
    a = runner.invoke(cli.train_group, ["--spec", str(tmp_path / "run.yaml")])
    b = runner.invoke(cli.train_group, ["--data", str(data), "--steps", "3", "--lr", "0.01",
                                        "--set", "lora.r=4"])
    assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
    assert seen[0].to_dict() == seen[1].to_dict()
    bad = runner.invoke(cli.train_group, ["--data", str(data), "--set", "steps"])
    assert bad.exit_code != 0 and "KEY=VALUE" in bad.output
