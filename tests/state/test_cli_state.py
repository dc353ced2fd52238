"""``slotserve state show|clear`` as an operator runs them, on a real state file (no server, no TensorFlow)."""

import json
import subprocess
import sys
from pathlib import Path

from app.state import Assignment, open_state
from tests.process import run


def test_show_lists_what_is_remembered_and_clear_forgets_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_state(str(path))
    store.record_assignment(Assignment("alice", "iris", None, 8, 500, updated_at=1_800_000_000, replica="r1"))
    store.record_assignment(Assignment("bob", "mnist", 3, None, None, failed="the model is gone",
                                       updated_at=1_800_000_001, replica="r1"))
    store.take_over(store.assignment("bob"), "r2")  # bob changed hands: epoch 2
    store.record_if_held(Assignment("bob", "mnist", 3, failed="the model is gone", updated_at=1_800_000_001,
                                    replica="r2", epoch=2))
    store.close()
    shown = run("state", "show", "--state", str(path))
    header, *rows = shown.stdout.splitlines()
    assert shown.returncode == 0 and header.split() == ["CLIENT", "MODEL", "VERSION", "REPLICA", "EPOCH", "UPDATED",
                                                                "FAILED"]
    assert rows[0].split() == ["alice", "iris", "r1", "1", "2027-01-15T08:00:00Z"]
    assert rows[1].split()[:6] == ["bob", "mnist", "3", "r2", "2", "2027-01-15T08:00:01Z"]
    assert "the model is gone" in rows[1]
    as_json = json.loads(run("state", "show", "--json", "--state", str(path)).stdout)
    assert [(r["client"], r["max_batch_size"], r["max_delay_us"], r["failed"], r["replica"], r["epoch"])
            for r in as_json] == [("alice", 8, 500, None, "r1", 1), ("bob", None, None, "the model is gone", "r2", 2)]
    cleared = run("state", "clear", "--state", str(path))
    assert cleared.returncode == 0 and "forgot 2 assignments" in cleared.stdout
    assert json.loads(run("state", "show", "--json", "--state", str(path)).stdout) == []


def test_a_missing_state_file_is_one_line_and_is_not_created(tmp_path: Path) -> None:
    for verb in ("show", "clear"):
        bad = run("state", verb, "--state", str(tmp_path / "typo.db"))
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no state file" in bad.stderr
    assert not (tmp_path / "typo.db").exists()
    code = ("import sys, app.cli; status = app.cli.main(['state', 'show', '--state', sys.argv[1]]); "
            "print('tensorflow' in sys.modules, status)")
    open_state(str(tmp_path / "s.db")).close()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True)
    assert done.stdout.split()[-2:] == ["False", "0"], done.stderr
