"""Every setting is a ``serve`` flag, ``--version``, and bad values refused in one line: real processes."""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from app.settings import Settings
from tests.process import run, serving


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def one_line_refusal(done: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (exit 2, no traceback, nothing on stdout)."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr.strip()


def test_serve_help_has_a_flag_for_every_setting_and_names_secrets_by_variable() -> None:
    done = run("serve", "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    offered = set(re.findall(r"^\s+(--[a-z0-9-]+)", text, re.MULTILINE))
    for name, field in Settings.model_fields.items():
        env = f"SLOTSERVE_{name.upper()}"
        assert env in text, f"{name}: its variable is not named in serve --help"
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())):
            assert flag(name) not in offered, f"{name} is a secret: never a flag (ps shows command lines)"
        else:
            assert flag(name) in offered, f"setting {name} has no serve flag"
    assert len(offered) >= len(Settings.model_fields) - 1  # -h/--help is one; admin_key is the one secret
    # the flags the README has always shown keep their names
    for old in ("--host", "--port", "--model-dir", "--slots", "--slot-memory-mb", "--device", "--state", "--no-auth",
                "--allowed-hosts", "--trust-savedmodel-ops", "--forget"):
        assert old in offered


@pytest.mark.parametrize("args", [["--admin-key", "k" * 40], ["--admin-key=" + "k" * 40], ["--admin-key"]])
def test_a_secret_given_as_a_flag_is_refused_in_one_line_without_repeating_it(args: list[str]) -> None:
    line = one_line_refusal(run("serve", *args))
    assert "--admin-key is not a flag" in line and "SLOTSERVE_ADMIN_KEY" in line and "kkkk" not in line


def test_version_prints_the_installed_version_without_tensorflow() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stdout == f"slotserve {importlib.metadata.version('slotserve')}\n"
    probe = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom app.cli import main\ntry:\n    main(['--version'])\n"
         "except SystemExit as stop:\n    print(stop.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)"],
        capture_output=True, text=True, timeout=120)
    assert probe.stdout.splitlines()[-1] == "0 False False", probe.stdout + probe.stderr


@pytest.mark.parametrize("how", ["env", "flag"])
def test_an_unknown_log_level_is_one_line_and_exit_2(how: str, tmp_path: Path) -> None:
    args, env = (["--log-level", "verbose"], {}) if how == "flag" else ([], {"SLOTSERVE_LOG_LEVEL": "verbose"})
    line = one_line_refusal(run("serve", "--model-dir", str(tmp_path), *args, env=env))
    assert line.startswith("slotserve: error: invalid setting: log_level:") and "debug, info, warning" in line


def test_log_levels_are_case_insensitive() -> None:
    assert Settings(log_level="DEBUG").log_level == "debug"
    assert Settings(log_level=" Warning ").log_level == "warning"


@pytest.mark.parametrize("args,fragment", [
    (["--max-rows", "0"], "max_rows: Input should be greater than or equal to 1"),
    (["--busy-timeout-s", "soon"], "busy_timeout_s: Input should be a valid number"),
    (["--allowed-hosts", "a.example,http://b/"], "allowed_hosts:"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_flag_values_are_one_line_and_exit_2(args: list[str], fragment: str, tmp_path: Path) -> None:
    assert fragment in one_line_refusal(run("serve", "--model-dir", str(tmp_path), *args))


def test_a_flag_beats_its_variable_and_reaches_the_server(model_dir: Path, refs, tmp_path: Path) -> None:
    """--max-body-mb was no flag before: a 2 MiB body is 413 with --max-body-mb 1, though the variable says 64."""
    with serving("--model-dir", str(model_dir), "--state", str(tmp_path / "s.db"), "--max-body-mb", "1",
                 env={"SLOTSERVE_MAX_BODY_MB": "64"}) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            big = http.post("/v1/clients/alice/predict", content=b"[" + b"0," * (1 << 20) + b"0]",
                            headers={"Content-Type": "application/json"})
            assert big.status_code == 413, big.text
