"""``slotserve keys`` and the start-up policy, as an operator runs them: real processes, real files."""

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from tests.process import run, serving


def add_key(state: Path, client: str, *flags: str) -> str:
    done = run("keys", "add", client, "--state", str(state), *flags)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert len(done.stdout.splitlines()) == 1 and key.startswith("ssk_")  # the key alone, for KEY=$(...)
    assert key not in done.stderr and f"'{client}'" in done.stderr
    return key


def test_keys_add_list_revoke(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    alice, ops = add_key(state, "alice"), add_key(state, "ops", "--admin")
    assert alice != ops
    listed = run("keys", "list", "--state", str(state))
    assert listed.returncode == 0 and alice not in listed.stdout and ops not in listed.stdout
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "CLIENT", "ADMIN", "CREATED", "LAST", "USED"]
    assert [(r.split()[1], r.split()[2], r.split()[-1]) for r in rows] == [("alice", "no", "never"),
                                                                         ("ops", "yes", "never")]
    as_json = json.loads(run("keys", "list", "--json", "--state", str(state)).stdout)
    assert [(k["client"], k["admin"], k["last_used"]) for k in as_json] == [("alice", False, None), ("ops", True, None)]
    revoked = run("keys", "revoke", "alice", "--state", str(state))
    assert revoked.returncode == 0 and "revoked 1 key" in revoked.stdout
    assert [k["client"] for k in json.loads(run("keys", "list", "--json", "--state", str(state)).stdout)] == ["ops"]
    again = run("keys", "revoke", "alice", "--state", str(state))
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "no active key" in again.stderr


def test_keys_commands_check_names_and_never_load_tensorflow(tmp_path: Path) -> None:
    for args in (["add", "../alice"], ["add", "admin"], ["list"], ["revoke", "alice"]):
        bad = run("keys", *args, "--state", str(tmp_path / "typo.db"))
        assert bad.returncode == 2 and bad.stderr.startswith("slotserve: error:") and bad.stderr.count("\n") == 1
    assert "no state file" in bad.stderr and not (tmp_path / "typo.db").exists()  # a typo is not "no keys"
    add_key(tmp_path / "s.db", "admin", "--admin")  # 'admin' is the environment admin's client: admins only
    code = ("import sys, app.cli; status = app.cli.main(['keys', 'list', '--state', sys.argv[1]]); "
            "print('tensorflow' in sys.modules, status)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True)
    assert done.stdout.split()[-2:] == ["False", "0"], done.stderr


def test_a_non_loopback_bind_without_keys_refuses_to_start(model_dir: Path, refs, tmp_path: Path) -> None:
    done = run("serve", "--host", "0.0.0.0", "--model-dir", str(model_dir), "--state", str(tmp_path / "s.db"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "refusing to serve 0.0.0.0 without authentication" in done.stderr


def test_no_auth_serves_a_non_loopback_bind_open_with_host_checks(model_dir: Path, refs, tmp_path: Path) -> None:
    with serving("--host", "0.0.0.0", "--no-auth", "--model-dir", str(model_dir),
                 "--state", str(tmp_path / "s.db")) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/v1/models").status_code == 200  # Host: 127.0.0.1:<port>
        refused = http.get("/v1/models", headers={"Host": "evil.example"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    warnings = [line for line in server.output.splitlines() if "WITHOUT authentication" in line]
    assert len(warnings) == 1 and "--no-auth was given" in warnings[0]


def test_a_port_in_use_is_one_line(model_dir: Path, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run("serve", "--model-dir", str(model_dir), "--state", str(tmp_path / "s.db"), "--port", str(port))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot listen on 127.0.0.1" in done.stderr


def test_a_short_admin_key_is_refused_without_repeating_it(model_dir: Path, tmp_path: Path) -> None:
    done = run("serve", "--model-dir", str(model_dir), "--state", str(tmp_path / "s.db"),
               env={"SLOTSERVE_ADMIN_KEY": "hunter2-secret"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "at least 32 characters" in done.stderr and "hunter2" not in done.stderr


def test_a_live_server_follows_keys_revoked_by_the_cli(model_dir: Path, refs, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    alice = add_key(state, "alice")
    admin_key = "operator-key-" + "x" * 40
    with serving("--model-dir", str(model_dir), "--state", str(state), "--host", "0.0.0.0",
                 env={"SLOTSERVE_ADMIN_KEY": admin_key, "SLOTSERVE_LOG_LEVEL": "debug"}) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        refused = http.get("/v1/slots")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        headers = {"Authorization": f"Bearer {alice}"}
        assert http.put("/v1/clients/alice/model", json={"model": "tiny"}, headers=headers).status_code == 200
        as_admin = http.get("/v1/clients/alice", headers={"Authorization": f"Bearer {admin_key}"})
        assert as_admin.json()["model"] == "tiny"
        assert run("keys", "revoke", "alice", "--state", str(state)).returncode == 0
        assert http.get("/v1/clients/alice", headers=headers).status_code == 401
    assert "WITHOUT authentication" not in server.output
    assert alice not in server.output and admin_key not in server.output  # not even at debug level
    assert json.loads(run("keys", "list", "--json", "--state", str(state)).stdout) == []  # alice's was revoked
    with sqlite3.connect(state) as db:  # and its last use was written when the server stopped
        assert db.execute("SELECT last_used_at FROM api_keys WHERE client = 'alice'").fetchone()[0] is not None
