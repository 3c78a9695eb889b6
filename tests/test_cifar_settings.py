"""`--set KEY=VALUE`: any config entry, nested ones included, with errors that name the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cifar_fixtures import shared_cifar_root_fixture, trained_run_fixture  # noqa: F401
from click.testing import CliRunner

from cifar.cli import main
from cifar.errors import CifarError
from cifar.presets import resolve_config
from cifar.recipe import AVERAGE_FIELDS
from cifar.settings import check_table


def test_settings_reach_nested_entries_and_parse_json_values():
    config = resolve_config("fast", ["muon.lr=0.16", "model.widths=[56,160,160]",
                                     "lookahead=null", "flip=random", "label_smoothing=0"])
    assert config["muon"]["lr"] == 0.16 and config["muon"]["momentum"] == 0.6
    assert config["model"]["widths"] == [56, 160, 160]
    assert config["lookahead"] is None and config["flip"] == "random"
    assert config["label_smoothing"] == 0


def test_settings_apply_after_the_options_and_whole_tables_can_be_set():
    config = resolve_config("fast-sgd", ["batch_size=256", 'muon={"lr": 0.2, "momentum": 0.5}'],
                            batch_size=1000)
    assert config["batch_size"] == 256 and config["muon"] == {"lr": 0.2, "momentum": 0.5}


@pytest.mark.parametrize("settings, message", [
    (["muon.foo=1"], r"--set muon.foo: no such setting; expected one of \['lr', 'momentum'"),
    (["epochs=ten"], r'--set epochs: expected an int like 10, got "ten"'),
    (["model.widths=3"], r"--set model.widths: expected a list like \[64, 160, 160\], got 3"),
    (["flip=true"], r'--set flip: expected a str like "alternate", got true'),
    (["muon"], r"--set: expected KEY=VALUE .* got 'muon'"),
    (["=1"], r"--set: expected KEY=VALUE"),
], ids=["unknown-key", "wrong-type", "list-expected", "bool-for-str", "no-value", "no-key"])
def test_a_bad_setting_is_an_error_naming_it(settings, message):
    with pytest.raises(ValueError, match=message):
        resolve_config("fast", settings)


def test_a_setting_inside_an_entry_that_is_off_says_to_set_it_whole():
    with pytest.raises(ValueError, match=r"--set muon.lr: muon is not a table .* null"):
        resolve_config("fast-sgd", ["muon.lr=0.1"])


@pytest.mark.parametrize("table", [None, {"every": 1, "decay": 0}, {"every": 7, "decay": 1.0}],
                         ids=["off", "lowest", "highest"])
def test_a_settings_table_within_its_bounds_or_null_passes(table: object):
    check_table("lookahead", table, AVERAGE_FIELDS)


@pytest.mark.parametrize("table", [{"every": 0, "decay": 0.5}, {"every": True, "decay": 0.5},
                                   {"every": 2.0, "decay": 0.5}, {"every": 2, "decay": False},
                                   {"every": 2, "decay": "0.5"}, {"every": 2},
                                   {"every": 2, "decay": 0.5, "start": 1}, [2, 0.5]],
                         ids=["below-minimum", "bool-count", "float-count", "bool-number",
                              "string-number", "missing-key", "unknown-key", "not-a-table"])
def test_a_bad_settings_table_is_refused_spelling_out_the_whole_expected_table(table: object):
    with pytest.raises(CifarError, match=r'^lookahead: expected null or \{"every": a count of '
                                         r'steps >= 1, "decay": a number from 0 to 1\}, got '
                                         + re.escape(repr(table)) + "$"):
        check_table("lookahead", table, AVERAGE_FIELDS)


def test_the_pynet_engine_refuses_a_setting_it_cannot_run():
    with pytest.raises(ValueError, match="--engine pynet: expected precision 'fp32'.*'bf16'"):
        resolve_config("fast", ["precision=bf16"], engine="pynet")


def test_train_records_the_settings_in_config_json(shared_cifar_root: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "--data-dir", str(shared_cifar_root), "--epochs", "1", "--batch-size", "64",
        "--threads", "2", "--device", "cpu", "--out", str(out), "--quiet",
        "--set", "muon.lr=0.12", "--set", "eval_batch_size=32"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["muon"]["lr"] == 0.12 and config["eval_batch_size"] == 32


def test_train_with_a_bad_setting_or_with_resume_is_a_one_line_error(trained_run: Path):
    runner = CliRunner()
    bad = runner.invoke(main, ["train", "--set", "muon.nope=1", "--out", "unused"])
    assert bad.exit_code != 0 and "--set muon.nope: no such setting" in bad.output
    resumed = runner.invoke(main, ["train", "--resume", str(trained_run), "--set", "epochs=3"])
    assert resumed.exit_code != 0 and "a resumed run keeps the recipe" in resumed.output
