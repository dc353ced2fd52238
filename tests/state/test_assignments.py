"""The assignment contract every backend keeps: holder tokens (replica, epoch), compare-and-set takeovers, and
writes that never overwrite what another replica recorded meanwhile."""

import threading

from app.state import Assignment, StateStore


def test_a_new_client_starts_at_epoch_1_and_its_holder_keeps_the_epoch(store: StateStore) -> None:
    first = store.record_assignment(Assignment("alice", "iris", replica="r1"))
    assert (first.replica, first.epoch) == ("r1", 1)
    again = store.record_assignment(Assignment("alice", "mnist", 2, 8, 500, replica="r1", epoch=first.epoch))
    assert again.epoch == 1
    stored = store.assignment("alice")
    assert (stored.model, stored.version, stored.max_batch_size, stored.max_delay_us) == ("mnist", 2, 8, 500)
    assert (stored.replica, stored.epoch) == ("r1", 1) and stored.updated_at > 0


def test_recording_from_another_replica_moves_the_client_and_bumps_the_epoch(store: StateStore) -> None:
    first = store.record_assignment(Assignment("alice", "iris", replica="r1"))
    moved = store.record_assignment(Assignment("alice", "iris", replica="r2"))
    assert (moved.replica, moved.epoch) == ("r2", 2)
    # r1 still believes it holds epoch 1: its token is stale, and a write with it changes nothing
    assert not first.held_by(store.assignment("alice"))
    assert not store.record_if_held(Assignment("alice", "mnist", failed="gone", replica="r1", epoch=1))
    assert store.assignment("alice").model == "iris"
    # the same replica with a stale epoch (a restarted process) also moves the epoch on
    assert store.record_assignment(Assignment("alice", "iris", replica="r2", epoch=1)).epoch == 3


def test_take_over_is_compare_and_set(store: StateStore) -> None:
    seen = store.record_assignment(Assignment("bob", "iris", None, 4, None, replica="r1"))
    taken = store.take_over(seen, "r2")
    assert taken is not None and (taken.replica, taken.epoch) == ("r2", 2)
    assert (taken.model, taken.max_batch_size) == ("iris", 4)
    assert store.take_over(seen, "r3") is None  # r3 read the row before r2 took it: refused
    assert store.assignment("bob").replica == "r2"
    store.forget_assignment("bob")
    assert store.take_over(taken, "r3") is None and store.assignment("bob") is None


def test_only_one_of_many_concurrent_takeovers_wins(store: StateStore) -> None:
    seen = store.record_assignment(Assignment("carol", "iris", replica="dead"))
    results: list[Assignment | None] = []
    threads = [threading.Thread(target=lambda r=f"r{i}": results.append(store.take_over(seen, r))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].held_by(store.assignment("carol"))
    assert store.assignment("carol").epoch == 2


def test_record_if_held_writes_for_the_holder_only(store: StateStore) -> None:
    held = store.record_assignment(Assignment("dave", "iris", replica="r1"))
    assert store.record_if_held(Assignment("dave", "iris", failed="the model is gone", replica="r1", epoch=held.epoch))
    assert store.assignment("dave").failed == "the model is gone"
    assert not store.record_if_held(Assignment("erin", "iris", replica="r1", epoch=1))  # no row: nothing written
    assert store.assignment("erin") is None


def test_assignments_are_listed_oldest_first_and_cleared(store: StateStore) -> None:
    for at, client in [(3.0, "c"), (1.0, "a"), (2.0, "b")]:
        store.record_assignment(Assignment(client, "iris", updated_at=at, replica="r1"))
    assert [a.client for a in store.assignments()] == ["a", "b", "c"]
    assert store.clear_assignments() == 3 and store.assignments() == []


def test_assignments_of_some_clients(store: StateStore) -> None:
    clients = [f"c{i}" for i in range(1203)]  # more than one statement's worth
    for client in clients[:1201]:
        store.record_assignment(Assignment(client, "iris", replica="r1"))
    found = store.assignments_of(clients[::2] + ["nobody"])
    assert sorted(a.client for a in found) == sorted(clients[:1201:2]) and store.assignments_of([]) == []
