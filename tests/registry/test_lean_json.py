"""The lean JSON decoder against orjson + numpy, on many random bodies: it must give the same array or decline,
never a different array. Small thresholds and chunks put many chunk boundaries inside each body."""

import json

import numpy as np
import orjson
import pytest

from app.registry import lean_json
from app.registry.lean_json import NotRegular, NumericText

THRESHOLD = 48


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch) -> None:
    monkeypatch.setattr(lean_json, "CHUNK", 37)  # boundaries fall everywhere: inside gaps, next to brackets


def numbers(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:
        return rng.integers(-1000, 1000, shape)
    if kind == 1:
        return rng.normal(size=shape).round(int(rng.integers(0, 6)))
    return rng.normal(size=shape) * 10.0 ** rng.integers(-30, 30, shape)


def encode(value: object, rng: np.random.Generator) -> bytes:
    style = rng.integers(3)
    if style == 0:
        return orjson.dumps(value)
    if style == 1:
        return json.dumps(value).encode()  # ", " separators
    return json.dumps(value, indent=int(rng.integers(1, 4))).encode()


def lean_array(body: bytes, key: str = "instances") -> np.ndarray | None:
    """The array lean decoding gives for ``body[key]``, or None if it declines (falls back) or refuses."""
    document = lean_json.prepare(body, threshold=THRESHOLD)
    if document is None:
        return None
    value = document.value[key]
    if not isinstance(value, NumericText):
        return None
    try:
        kind = np.float64 if value.floats else np.int64
        return value.materialize(np.dtype(kind), lambda chunk: chunk.astype(kind))
    except (NotRegular, lean_json.HugeInteger, orjson.JSONDecodeError):
        return None


def plain_array(body: bytes, key: str = "instances") -> np.ndarray | None:
    try:
        array = np.asarray(orjson.loads(body)[key])
    except (orjson.JSONDecodeError, ValueError):
        return None
    return array if array.dtype.kind in "iuf" else None


def test_regular_arrays_decode_exactly_as_orjson_and_numpy_would() -> None:
    rng = np.random.default_rng(1)
    taken = 0
    for _ in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 7, rng.integers(1, 5)))
        values = numbers(rng, shape)
        body = encode({"id": "r", "instances": values.tolist(), "n": 3}, rng)
        expected = plain_array(body)
        got = lean_array(body)
        if got is None:
            continue
        taken += 1
        assert got.shape == expected.shape and np.array_equal(got, expected), (shape, body[:200])
    assert taken > 200  # most are long enough to be taken lean


@pytest.mark.parametrize("seed", range(4))
def test_damaged_arrays_are_declined_never_misread(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    for _ in range(150):
        shape = tuple(int(n) for n in rng.integers(2, 6, rng.integers(1, 4)))
        text = bytearray(encode({"instances": numbers(rng, shape).tolist()}, rng))
        start = text.index(b"[")
        position = int(rng.integers(start, len(text) - 2))
        damage = rng.integers(6)
        if damage == 0:
            del text[position]                                   # any character gone
        elif damage == 1:
            text.insert(position, int(rng.choice(list(b",[]-.e 1"))))  # an extra one
        elif damage == 2:
            text[position:position] = b"[]"                      # an empty array
        elif damage == 3:
            text[position:position] = b'"x"'                     # a string among the numbers
        else:
            text[position:position] = b",1"                      # one more number somewhere
        body = bytes(text)
        got, expected = lean_array(body), plain_array(body)
        if got is not None:  # taken lean: it must be exactly what a correct parser gives
            assert expected is not None and got.shape == expected.shape and np.array_equal(got, expected), body


def test_what_is_not_a_numeric_array_is_left_to_orjson() -> None:
    long = ",".join(["1"] * 40)
    cases = [
        {"id": f"[{long}]", "inputs": [[1.5]]},                           # numbers inside a string
        {"instances": [[1, 2], [3, "x"]] * 20},                          # not all numbers
        {"instances": [[1.0] * 20, [2.0] * 19] * 3},                      # ragged
        {"\x00slotserve": 0, "instances": [[1.0] * 30] * 3},              # the placeholder, sent by a client
    ]
    for value in cases:
        body = orjson.dumps(value)
        document = lean_json.prepare(body, threshold=THRESHOLD)
        assert document is None or document.value == orjson.loads(body) or all(
            not isinstance(v, NumericText) or v.shape == np.asarray(value["instances"]).shape
            for v in document.value.values()), value


def test_several_arrays_in_one_body_each_keep_their_place() -> None:
    a, b = np.arange(60).reshape(6, 10), np.linspace(0, 1, 45).reshape(3, 15)
    body = orjson.dumps({"inputs": [{"name": "a", "data": a.tolist()}, {"name": "b", "data": b.tolist()}]})
    document = lean_json.prepare(body, threshold=THRESHOLD)
    first, second = (t["data"] for t in document.value["inputs"])
    assert first.shape == (6, 10) and not first.floats and first.int_digits == 2
    assert second.shape == (3, 15) and second.floats
    assert document.numbers == 60 + 45
    np.testing.assert_array_equal(second.materialize(np.dtype(np.float64), lambda c: c), b)


def test_integers_beyond_int64_are_refused() -> None:
    with pytest.raises(lean_json.HugeInteger):
        lean_json.check_integers(b'{"instances": [[1, 9223372036854775808]]}')
    lean_json.check_integers(b'{"instances": [[9223372036854775807, -9223372036854775808, 1e300]]}')
    body = orjson.dumps({"instances": [[1] * 20 + [9223372036854775809]] * 4})
    text = lean_json.prepare(body, threshold=THRESHOLD).value["instances"]
    with pytest.raises(lean_json.HugeInteger):
        text.materialize(np.dtype(np.int64), lambda c: c)


def test_deep_nests_are_left_to_orjson_at_once() -> None:
    deep = b'{"instances": ' + b"[" * 5000 + b",".join([b"1"] * 20000) + b"]" * 5000 + b"}"
    assert lean_json.prepare(deep, threshold=THRESHOLD) is None  # no scan of 5000 dimensions per chunk
    fine = orjson.dumps({"instances": np.ones((2,) * 12 + (20,)).tolist()})  # 13 dimensions are fine
    assert lean_json.prepare(fine, threshold=THRESHOLD).value["instances"].shape == (2,) * 12 + (20,)
