"""A replica dies; its clients carry on elsewhere: three replicas behind nginx, one shared PostgreSQL, real processes.

One story, in order (starting the cluster costs seconds, so the steps share it):
1. nine clients load a model and predict through nginx, which hashes each to one replica; the store and every
   replica's own /v1/slots agree on who holds whom;
2. a replica holding clients is killed with ``kill -9``. Every client predicts again through nginx, retrying until a
   30 s deadline: each answers with the same predictions as before. Each moved client was taken over exactly once
   (its epoch went up by one) and is held by a live replica; the others did not move. No client is lost or held
   twice: the store has the nine, and each live replica's slots are exactly what the store says it holds;
3. every protocol keeps working through nginx for a moved client (native, V2 and TF Serving with X-Client-Id);
4. the killed replica restarts (``cluster.sh start-replica``): it restores none of the clients that moved, which the
   store still says the others hold. Once nginx sends their requests to it again, it takes them back, and the
   replicas they had moved to drop their stale copies within the ownership check.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from tests.cluster.conftest import REPLICAS, Cluster
from tests.helpers import TOLERANCE

CLIENTS = [f"client-{n}" for n in range(9)]
WIDTHS = {"tiny": 32, "iris": 4}  # demo models (slotserve demo-models) and their input widths
MODEL_OF = {client: ("tiny", "iris")[n % 2] for n, client in enumerate(CLIENTS)}
DEADLINE_S = 30  # the bound on a moved client's first answer
CONVERGE_S = 20  # stale copies go within --ownership-check-s (1 s here); generous for a loaded machine


def rows(model: str) -> np.ndarray:
    """Fixed inputs for ``model``: the same rows before and after the failover."""
    return np.random.default_rng(WIDTHS[model]).normal(size=(3, WIDTHS[model])).astype(np.float32)


def predict(http: httpx.Client, client: str) -> httpx.Response:
    return http.post(f"/v1/clients/{client}/predict", json={"instances": rows(MODEL_OF[client]).tolist()})


def until_200(send: Callable[[], httpx.Response], deadline_s: float) -> tuple[httpx.Response, float]:
    """Send until a 200 (a dead replica's connection reset, or a takeover's wait, is retried) or the deadline; the
    answer and the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            reply = send()
            if reply.status_code == 200:
                return reply, time.monotonic() - start
            seen = f"{reply.status_code} {reply.text[:300]}"
        except httpx.TransportError as exc:
            seen = repr(exc)
        if time.monotonic() - start > deadline_s:
            raise AssertionError(f"no 200 within {deadline_s} s; last: {seen}")
        time.sleep(0.2)


def converge(cluster: Cluster, http: httpx.Client, live: list[int]) -> dict[str, dict]:
    """Poll until the store holds exactly the nine clients, each by a live replica, and each live replica's slots
    are exactly the clients the store says it holds; the store then. Fails with what differs at the deadline."""
    deadline = time.monotonic() + CONVERGE_S
    while True:
        store = cluster.store()
        expected = {i: {c for c, row in store.items() if row["replica"] == f"replica-{i}"} for i in live}
        held = {i: cluster.held(http, i) for i in live}
        if set(store) == set(CLIENTS) and held == expected and set().union(*expected.values()) == set(CLIENTS):
            return store
        if time.monotonic() > deadline:
            raise AssertionError(f"store {({c: r['replica'] for c, r in store.items()})} != slots {held}\n"
                                 f"{cluster.logs()}")
        time.sleep(0.2)


def replica_index(row: dict) -> int:
    return int(row["replica"].removeprefix("replica-"))


def test_a_killed_replicas_clients_move_once_and_keep_their_predictions(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=45, trust_env=False) as http:
        # 1. nine clients load and predict through nginx
        for client in CLIENTS:
            loaded = http.put(f"/v1/clients/{client}/model", json={"model": MODEL_OF[client]})
            assert loaded.status_code == 200, loaded.text
        before = {}
        for client in CLIENTS:
            reply = predict(http, client)
            assert reply.status_code == 200, reply.text
            before[client] = np.asarray(reply.json()["predictions"])
        first = converge(cluster, http, list(range(1, REPLICAS + 1)))
        assert {row["epoch"] for row in first.values()} == {1}, first
        counts = {i: sum(replica_index(row) == i for row in first.values()) for i in range(1, REPLICAS + 1)}
        victim = max(counts, key=counts.__getitem__)  # holds at least one client
        moved = {c for c, row in first.items() if replica_index(row) == victim}
        live = [i for i in range(1, REPLICAS + 1) if i != victim]

        # 2. kill -9 the victim; every client answers again, as before (concurrently, as clients would)
        cluster.kill_9(victim)
        with ThreadPoolExecutor(len(CLIENTS)) as pool:
            answered = dict(zip(CLIENTS, pool.map(
                lambda c: until_200(lambda: predict(http, c), DEADLINE_S), CLIENTS)))
        for client, (reply, _) in answered.items():
            np.testing.assert_allclose(np.asarray(reply.json()["predictions"]), before[client],
                                       atol=TOLERANCE, rtol=0, err_msg=client)
        print(f"replica-{victim} killed holding {sorted(moved)}; seconds until each answered again: "
              + ", ".join(f"{c}={answered[c][1]:.2f}" for c in CLIENTS))
        after = converge(cluster, http, live)
        for client in CLIENTS:
            was, now = first[client], after[client]
            if client in moved:  # taken over once, by a live replica
                assert replica_index(now) in live and now["epoch"] == was["epoch"] + 1, (client, was, now)
            else:
                assert (now["replica"], now["epoch"]) == (was["replica"], was["epoch"]), (client, was, now)

        # 3. every protocol, through nginx, for a moved client (V2 and TF Serving name it in X-Client-Id)
        client = min(moved)
        model, inputs = MODEL_OF[client], rows(MODEL_OF[client])
        named = {"X-Client-Id": client}
        tensor = {"name": "x", "datatype": "FP32", "shape": list(inputs.shape), "data": inputs.reshape(-1).tolist()}
        v2 = http.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]}, headers=named)
        assert v2.status_code == 200, v2.text
        np.testing.assert_allclose(np.reshape(v2.json()["outputs"][0]["data"], before[client].shape), before[client],
                                   atol=TOLERANCE, rtol=0)
        tfs = http.post(f"/v1/models/{model}:predict", json={"instances": inputs.tolist()}, headers=named)
        assert tfs.status_code == 200, tfs.text
        np.testing.assert_allclose(np.asarray(tfs.json()["predictions"]), before[client], atol=TOLERANCE, rtol=0)
        assert cluster.store()[client]["epoch"] == after[client]["epoch"]  # the same holder answered them all

        # 4. the victim comes back empty of what moved; nginx then sends those clients back to it, once each
        cluster.sh("start-replica", str(victim))
        direct = httpx.get(f"{cluster.replica_url(victim)}/readyz", timeout=10, trust_env=False)
        assert direct.status_code == 200
        with httpx.Client(timeout=10, trust_env=False) as replicas:
            assert cluster.held(replicas, victim) == set(), cluster.logs()
        restarted = cluster.store()
        for client in moved:
            assert (restarted[client]["replica"], restarted[client]["epoch"]) == (after[client]["replica"],
                                                                                  after[client]["epoch"])
        for client in CLIENTS:
            reply, _ = until_200(lambda: predict(http, client), DEADLINE_S)
            np.testing.assert_allclose(np.asarray(reply.json()["predictions"]), before[client],
                                       atol=TOLERANCE, rtol=0, err_msg=client)
        back = converge(cluster, http, list(range(1, REPLICAS + 1)))
        for client in CLIENTS:
            if client in moved:
                assert (replica_index(back[client]), back[client]["epoch"]) == (victim, after[client]["epoch"] + 1)
            else:
                assert back[client]["epoch"] == first[client]["epoch"], (client, back[client])
