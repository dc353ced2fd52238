"""The official ``tritonclient.http`` client, unmodified, against a real uvicorn server on 127.0.0.1.

The server runs in a thread of the test process, so it shares the session's TensorFlow partition plan.
"""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import tritonclient.http as triton
import uvicorn
from tritonclient.utils import InferenceServerException

from app.api import create_app
from app.settings import Settings
from app.state import SQLiteState, create_key
from tests.helpers import TOLERANCE
from tests.models import Reference


class _Server(uvicorn.Server):
    """A uvicorn server that signals once its startup (the lifespan that builds the registry) has finished."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.up.set()


@contextmanager
def triton_against(settings: Settings) -> Iterator[triton.InferenceServerClient]:
    """A tritonclient connected to slotserve on a free port; the server stops (and frees its models) after."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; uvicorn serves on this very socket
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.up.wait(60), "the server did not start"
    client = triton.InferenceServerClient(url=f"127.0.0.1:{port}", network_timeout=60)
    try:
        for _ in range(600):  # ready once the clients remembered from the last run are back (none here)
            if client.is_server_ready():
                break
            time.sleep(0.05)
        assert client.is_server_ready()
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(60)
        sock.close()
    assert not thread.is_alive()


@pytest.fixture
def triton_client(settings: Settings) -> Iterator[triton.InferenceServerClient]:
    with triton_against(settings) as client:
        yield client


def headers(client: str) -> dict[str, str]:
    return {"X-Client-Id": client}


def inputs(ref: Reference, binary: bool) -> list[triton.InferInput]:
    result = []
    for name, value in ref.inputs.items():
        tensor = triton.InferInput(name, list(value.shape), "INT32" if value.dtype == np.int32 else "FP32")
        tensor.set_data_from_numpy(value, binary_data=binary)
        result.append(tensor)
    return result


def assert_matches(result: triton.InferResult, ref: Reference) -> None:
    for name, expected in ref.outputs.items():
        np.testing.assert_allclose(result.as_numpy(name), expected, atol=TOLERANCE, rtol=0)


def test_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    metadata = triton_client.get_server_metadata()
    assert metadata["name"] == "slotserve" and "binary_tensor_data" in metadata["extensions"]
    assert "model_repository" in metadata["extensions"]


def test_repository_load_metadata_ready_unload(triton_client: triton.InferenceServerClient) -> None:
    alice = headers("alice")
    index = triton_client.get_model_repository_index(headers=alice)
    assert {"name": "tiny", "version": "1", "state": "UNAVAILABLE", "reason": "not loaded by this client"} in index
    assert not triton_client.is_model_ready("tiny", headers=alice)
    triton_client.load_model("tiny", headers=alice)
    assert triton_client.is_model_ready("tiny", headers=alice)
    assert triton_client.is_model_ready("tiny", "1", headers=alice)
    assert not triton_client.is_model_ready("tiny", "2", headers=alice)
    assert not triton_client.is_model_ready("tiny", headers=headers("bob"))  # bob has not loaded it
    ready = [e["name"] for e in triton_client.get_model_repository_index(headers=alice) if e["state"] == "READY"]
    assert ready == ["tiny"]
    metadata = triton_client.get_model_metadata("tiny", headers=alice)
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 32]}]
    assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}]
    assert metadata["versions"] == ["1"] and metadata["platform"] == "tensorflow_keras"
    triton_client.unload_model("tiny", headers=alice)
    assert not triton_client.is_model_ready("tiny", headers=alice)
    with pytest.raises(InferenceServerException) as raised:
        triton_client.unload_model("tiny", headers=alice)
    assert raised.value.status() == "400" and "not loaded for client 'alice'" in raised.value.message()


@pytest.mark.parametrize("binary_in,binary_out", [(False, False), (True, False), (False, True), (True, True)])
def test_infer(triton_client: triton.InferenceServerClient, refs: dict[str, Reference], binary_in: bool,
               binary_out: bool) -> None:
    triton_client.load_model("tiny")  # no headers: the "default" client
    outputs = [triton.InferRequestedOutput("y", binary_data=binary_out)]
    result = triton_client.infer("tiny", inputs(refs["tiny"], binary_in), outputs=outputs, request_id="r-1")
    assert_matches(result, refs["tiny"])
    response = result.get_response()
    assert response["id"] == "r-1" and response["model_name"] == "tiny" and response["model_version"] == "1"
    assert ("binary_data_size" in response["outputs"][0].get("parameters", {})) is binary_out


def test_multi_input_model_and_int_inputs(triton_client: triton.InferenceServerClient,
                                          refs: dict[str, Reference]) -> None:
    carol, dave = headers("carol"), headers("dave")
    triton_client.load_model("pair", headers=carol)
    triton_client.load_model("ints", headers=dave)
    metadata = triton_client.get_model_metadata("pair", headers=carol)
    assert [t["name"] for t in metadata["inputs"]] == ["a", "b"]
    for binary in (False, True):
        # no requested outputs: tritonclient asks for every output as binary data
        assert_matches(triton_client.infer("pair", inputs(refs["pair"], binary), headers=carol), refs["pair"])
        only = [triton.InferRequestedOutput("probs", binary_data=binary)]
        result = triton_client.infer("pair", inputs(refs["pair"], binary), outputs=only, headers=carol)
        assert [t["name"] for t in result.get_response()["outputs"]] == ["probs"]
        np.testing.assert_allclose(result.as_numpy("probs"), refs["pair"].outputs["probs"], atol=TOLERANCE, rtol=0)
        assert_matches(triton_client.infer("ints", inputs(refs["ints"], binary), headers=dave), refs["ints"])


def test_errors_reach_the_client(triton_client: triton.InferenceServerClient, refs: dict[str, Reference]) -> None:
    triton_client.load_model("tiny", headers=headers("erin"))
    cases = [
        ("nope", refs["tiny"], headers("erin"), "unknown model"),
        ("tiny", refs["tiny"], headers("frank"), "not loaded for client 'frank'"),
        ("tiny", refs["pair"], headers("erin"), "takes inputs ['x']"),
    ]
    for model, ref, client, expected in cases:
        with pytest.raises(InferenceServerException) as raised:
            triton_client.infer(model, inputs(ref, True), headers=client)
        assert raised.value.status() == "400" and expected in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        triton_client.load_model("big", headers=headers("erin"))
    assert raised.value.status() == "507"
    assert triton_client.is_model_ready("tiny", headers=headers("erin"))  # the failed swap kept its model


def test_api_keys_in_the_clients_headers(settings: Settings, refs: dict[str, Reference]) -> None:
    store = SQLiteState(settings.state)
    key = create_key(store, "alice")[0]
    store.close()
    with triton_against(settings) as client:
        assert client.is_server_ready()  # health needs no key
        with pytest.raises(InferenceServerException) as raised:
            client.load_model("tiny")
        assert raised.value.status() == "401"
        auth = {"Authorization": f"Bearer {key}"}
        client.load_model("tiny", headers=dict(auth))  # tritonclient adds to the dict it is given: pass copies
        assert client.is_model_ready("tiny", headers=dict(auth))
        assert_matches(client.infer("tiny", inputs(refs["tiny"], True), headers=dict(auth)), refs["tiny"])
        with pytest.raises(InferenceServerException) as raised:
            client.infer("tiny", inputs(refs["tiny"], True), headers={**auth, "X-Client-Id": "bob"})
        assert raised.value.status() == "403"
