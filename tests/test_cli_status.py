"""``slotserve status`` as an operator runs it: real servers, real HTTP, the command as a subprocess."""

import http.server
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.models import Reference
from tests.process import SLOTSERVE, Running, free_port, run, serving

ADMIN_KEY = "status-admin-key-0123456789abcdefghij"
NO_ENV = {"SLOTSERVE_KEY": "", "SLOTSERVE_URL": ""}  # whatever the caller's shell has, these tests name their own
COLUMNS = ["SLOT", "DEVICE", "STATE", "CLIENT", "MODEL", "MEMORY", "USED", "LIMIT", "PEAK", "RESIDUE"]
MIB = 1 << 20


def _store(refs: dict[str, Reference], where: Path) -> Path:
    where.mkdir()
    for name in ("tiny", "four_mb", "nine_mb"):
        shutil.copy(refs[name].path, where / f"{name}.keras")
    return where


@pytest.fixture(scope="module")
def server(refs: dict[str, Reference], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Three 64 MiB slots, no keys: alice holds four_mb, bob nine_mb, the third slot is empty."""
    root = tmp_path_factory.mktemp("status")
    with serving("--model-dir", str(_store(refs, root / "models")), "--state", str(root / "s.db"),
                 env={"SLOTSERVE_SLOTS": "3"}) as running:
        for client, model in (("alice", "four_mb"), ("bob", "nine_mb")):
            assert httpx.put(f"{running.url}/v1/clients/{client}/model", json={"model": model},
                             timeout=60).status_code == 200
        yield running


@pytest.fixture(scope="module")
def keyed(refs: dict[str, Reference], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, str]]:
    """A server with an admin key (environment) and a tenant key for alice; alice and carol hold models."""
    root = tmp_path_factory.mktemp("status-keyed")
    added = run("keys", "add", "alice", "--state", str(root / "s.db"))
    assert added.returncode == 0, added.stderr
    with serving("--model-dir", str(_store(refs, root / "models")), "--state", str(root / "s.db"),
                 env={"SLOTSERVE_ADMIN_KEY": ADMIN_KEY}) as running:
        for client, model in (("alice", "tiny"), ("carol", "four_mb")):
            assert httpx.put(f"{running.url}/v1/clients/{client}/model", json={"model": model}, timeout=60,
                             headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
        yield running, added.stdout.strip()


def _rows(output: str) -> tuple[str, list[str], list[list[str]]]:
    """The header line, the column names and each slot's cells (columns are two or more spaces apart)."""
    header, names, *rows = output.rstrip("\n").splitlines()
    return header, names.split(), [re.split(r"\s{2,}", row.strip()) for row in rows]


def _slots(url: str, key: str | None = None) -> list[dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{url}/v1/slots", headers=headers).json()["slots"]


def _mib(count: int) -> str:
    """As the README says: MiB with one decimal, and "<0.1" for an amount that would read 0.0 but is not 0."""
    return "<0.1" if 0 < count < MIB / 20 else f"{count / MIB:.1f}"


def _expected(slot: dict, at_most: str = "") -> list[str]:
    memory, hidden = slot["memory"], slot["state"] == "occupied"
    used = memory["in_use_bytes"] / memory["limit_bytes"]
    return [str(slot["slot"]), slot["device"].rsplit("device:", 1)[-1], slot["state"],
            "another client" if hidden else slot["client"] or "-", "-" if hidden else slot["model"] or "-",
            f"{round(used * 100)}%", at_most + _mib(memory["in_use_bytes"]), _mib(memory["limit_bytes"]),
            at_most + _mib(memory["peak_bytes"]), at_most + _mib(slot["residue_bytes"])]


def _shown(cells: list[str]) -> list[str]:
    """A row's cells with the bar dropped from its memory cell (``[###.....] 37%`` -> ``37%``)."""
    bar, percent = cells[5].split()
    assert re.fullmatch(r"\[#*:*\.*\]", bar) and len(bar) == 22, bar
    return [*cells[:5], percent, *cells[6:]]


def test_the_table_shows_what_the_api_says_without_loading_tensorflow(server: Running) -> None:
    code = ("import sys, app.cli; status = app.cli.main(['status']); "
            "print('tensorflow' in sys.modules, status)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **NO_ENV, "SLOTSERVE_URL": server.url})
    assert done.stderr == "" and "\x1b" not in done.stdout
    output, last = done.stdout.rsplit("\n", 2)[0], done.stdout.splitlines()[-1]
    assert last.split() == ["False", "0"]  # no TensorFlow, exit 0
    slots = _slots(server.url)
    header, names, rows = _rows(output)
    version = httpx.get(f"{server.url}/openapi.json").json()["info"]["version"]
    total = f"{sum(s['memory']['in_use_bytes'] for s in slots) / MIB:.1f} / {3 * 64:.1f} MiB"
    assert header == f"slotserve {version} at {server.url}   slots in use: 2/3   memory: {total}"
    assert names == COLUMNS and all(len(line) <= 120 for line in output.splitlines())
    assert [_shown(row) for row in rows] == [_expected(slot) for slot in slots]
    assert [row[3:5] for row in rows] == [["alice", "four_mb"], ["bob", "nine_mb"], ["-", "-"]]
    assert float(rows[1][6]) > 8  # nine_mb's weights, in MiB
    as_json = run("status", "--json", "--url", server.url + "/", env=NO_ENV)
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == httpx.get(f"{server.url}/v1/slots").json()


def test_refusals_are_one_line(keyed: tuple[Running, str], tmp_path: Path) -> None:
    server, _ = keyed
    down = f"http://127.0.0.1:{free_port()}"
    cases = [(["--url", down], "connection refused", 1), (["--url", "ftp://example"], "--url", 2),
             (["--url", server.url], "set SLOTSERVE_KEY or pass --key", 1),
             (["--url", server.url, "--key", "ssk_not-a-key-at-all"], "the server refused the key (401", 1),
             (["--url", server.url, "--key", "bad\nkey"], "cannot be sent in an HTTP header", 1),
             (["--url", server.url, "--watch", "0"], "at least 0.1 seconds", 2)]
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "slots").write_text("<html>not a slot list</html>")
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: http.server.SimpleHTTPRequestHandler(
        *a, directory=str(tmp_path)))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{web.server_address[1]}"
    cases += [(["--url", other], "did not answer JSON: is it a slotserve server?", 1),
              (["--url", other + "/elsewhere"], "answered HTTP 404 without slotserve's error body", 1)]
    try:
        for args, fragment, status in cases:
            done = run("status", *args, env=NO_ENV)
            assert (done.returncode, done.stdout) == (status, ""), (args, done.stderr)
            assert done.stderr.count("\n") == 1 and fragment in done.stderr, (args, done.stderr)
            assert "Traceback" not in done.stderr and "not-a-key" not in done.stderr
    finally:
        web.shutdown()
        web.server_close()
    assert down in run("status", "--url", down, env=NO_ENV).stderr  # says which server it could not reach
    assert "This server needs an API key" in run("status", "--url", server.url, env=NO_ENV).stderr  # its words


def test_keys_see_what_the_api_lets_them_see(keyed: tuple[Running, str]) -> None:
    server, tenant = keyed
    admin = run("status", "--url", server.url, env={**NO_ENV, "SLOTSERVE_KEY": ADMIN_KEY})
    assert admin.returncode == 0 and ADMIN_KEY not in admin.stdout + admin.stderr
    _, names, rows = _rows(admin.stdout)
    assert names == COLUMNS and [_shown(r) for r in rows] == [_expected(s) for s in _slots(server.url, ADMIN_KEY)]
    assert [row[3:5] for row in rows] == [["alice", "tiny"], ["carol", "four_mb"]]
    mine = run("status", "--url", server.url, "--key", tenant, env=NO_ENV)
    assert mine.returncode == 0 and tenant not in mine.stdout + mine.stderr
    header, _, rows = _rows(mine.stdout)
    seen = _slots(server.url, tenant)
    assert [s["state"] for s in seen] == ["ready", "occupied"]
    assert [_shown(r) for r in rows] == [_expected(seen[0]), _expected(seen[1], "<=")]
    assert rows[1][3:5] == ["another client", "-"] and "carol" not in mine.stdout and "four_mb" not in mine.stdout
    assert "memory: <=" in header  # a total with rounded-up figures in it says so


def _until(proc: subprocess.Popen, read: Callable[[], str], done: Callable[[str], bool], what: str) -> str:
    """Read ``proc``'s output until ``done(output)``; fail (after stopping it) if it exits or a minute passes."""
    output, deadline = "", time.monotonic() + 60
    while not done(output):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} in: {output!r}")
        output += read()
    return output


def test_watch_refreshes_until_ctrl_c(server: Running, tmp_path: Path) -> None:
    log = tmp_path / "watch.out"
    with log.open("w") as out:
        proc = subprocess.Popen([*SLOTSERVE, "status", "--url", server.url, "--watch", "0.2"], stdout=out,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **NO_ENV})
        try:
            _until(proc, lambda: (time.sleep(0.1), "")[1], lambda _: log.read_text().count("slotserve ") >= 2,
                   "second refresh")
            put = httpx.put(f"{server.url}/v1/clients/dave/model", json={"model": "tiny"}, timeout=60)
            assert put.status_code == 200
            _until(proc, lambda: (time.sleep(0.1), "")[1], lambda _: " dave " in log.read_text(), "dave")
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0 and proc.stderr.read() == ""
            httpx.delete(f"{server.url}/v1/clients/dave/model", timeout=60)
    frames = log.read_text().strip().split("\n\n")
    assert len(frames) >= 3 and all(f.startswith("slotserve ") for f in frames) and "\x1b" not in frames[0]
    assert "slots in use: 2/3" in frames[0] and "slots in use: 3/3" in frames[-1]
    _, names, rows = _rows(frames[-1])
    assert names[:len(COLUMNS)] == COLUMNS and rows[2][3:5] == ["dave", "tiny"]


def test_watch_on_a_terminal_redraws_in_place(server: Running) -> None:
    import codecs
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))  # 40 rows, 140 columns
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a read may end inside a character
    proc = subprocess.Popen([*SLOTSERVE, "status", "--url", server.url, "--watch", "0.2"], stdin=follower,
                            stdout=follower, stderr=follower, env={**os.environ, **NO_ENV, "TERM": "xterm"})
    os.close(follower)

    def read() -> str:
        ready, _, _ = select.select([leader], [], [], 0.2)
        return decoder.decode(os.read(leader, 65536)) if ready else ""

    try:
        output = _until(proc, read, lambda text: text.count("slotserve ") >= 3, "third redraw")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        output += "".join(iter(lambda: _drain(read), None))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert "\x1b[" in output and "alice" in output and "█" in output  # colours and block bars
    assert "\x1b[2K" in output or "\x1b[1A" in output  # the cursor goes back up: redrawn in place, not scrolled
    assert output.rstrip().endswith("\x1b[?25h")  # and the cursor is shown again on Ctrl-C


def _drain(read: Callable[[], str]) -> str | None:
    try:
        return read() or None
    except OSError:  # the terminal closed with the process
        return None
