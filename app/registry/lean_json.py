"""JSON bodies whose big numeric arrays never become Python objects.

``orjson.loads`` turns every number of a request into a Python float or int (24-32 bytes each, plus a list slot):
a 64 MiB body of short numbers costs about 0.8 GB before numpy even sees it. Here every array of numbers whose text
is at least ``THRESHOLD`` bytes is found with one regular expression, checked for a regular shape by a vectorised
scan of its brackets and commas (``_Scan``), and kept as ``NumericText``: its place in the body, its shape and what
kind of numbers it holds. The rest of the body, small now, is parsed by orjson. Later, once the model's dtype is
known, ``NumericText.materialize`` parses the numbers chunk by chunk (orjson on at most ~1 MiB of text at a time)
straight into one array of that dtype: peak memory is the body, the final array and one chunk.

A span that is not a regular array (ragged, a string that looks like numbers, an array that does not end where it
should) is simply not taken: ``prepare`` then answers ``None`` and the caller parses the whole body with orjson.
"""

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import orjson

THRESHOLD = 64 << 10  # arrays with less text than this are parsed by orjson with the rest of the body
CHUNK = 256 << 10  # text parsed per orjson call while materializing (it holds the GIL that long: ~1 ms)
_SPANS: dict[int, re.Pattern[bytes]] = {}
MAX_NDIM = 32  # deeper arrays are left to orjson (no model takes them; a deep nest would make the scan slow)
_KEY = "\x00slotserve"  # the placeholder {"\u0000slotserve": n}: a key no client sends, and invalid in a string
_BRACKETS = bytes.maketrans(b"[]", b"  ")

# byte classes of the scan: 0 other, 1 number character, 2 '[', 3 ']', 4 ',', 5 white space
_CLASS = np.zeros(256, np.uint8)
_CLASS[np.frombuffer(b"0123456789+-.eE", np.uint8)] = 1
_CLASS[ord("[")], _CLASS[ord("]")], _CLASS[ord(",")] = 2, 3, 4
_CLASS[np.frombuffer(b" \t\r\n", np.uint8)] = 5
_FLOATY = np.zeros(256, bool)
_FLOATY[np.frombuffer(b".eE", np.uint8)] = True
_DIGIT = np.zeros(256, bool)
_DIGIT[np.frombuffer(b"0123456789", np.uint8)] = True
# pairs of neighbouring (non-space) classes that never occur in a regular array of numbers: "[]", "[,", ",]",
# ",,", "][", "]1", "1[" (a number's own characters may follow each other; orjson checks them later)
_BAD_PAIR_CODE = np.zeros(36, bool)  # indexed by 6 * left + right
for _a, _b in ((2, 3), (2, 4), (4, 3), (4, 4), (3, 2), (3, 1), (1, 2)):
    _BAD_PAIR_CODE[6 * _a + _b] = True


class NotRegular(Exception):
    """The span is not one regular array of numbers (it is left to orjson)."""


class HugeInteger(ValueError):
    """A JSON integer beyond int64: orjson would turn it into a float, numpy would mix it into float64."""


INT64_MAX = (1 << 63) - 1
_LONG_DIGITS = re.compile(rb"[0-9]{19,}")  # a cheap first look (most bodies have no 19-digit run at all)
_BIG_INTEGER = re.compile(rb"(?<![0-9.eE+\-])-?[0-9]{19,}(?![0-9.eE])")


def check_integers(raw: bytes | bytearray) -> None:
    """Raise ``HugeInteger`` if the text holds an integer literal beyond int64 (19 digits or more, checked)."""
    if _LONG_DIGITS.search(raw) is None:
        return
    for match in _BIG_INTEGER.finditer(raw):
        if abs(int(match.group())) > INT64_MAX + (match.group().startswith(b"-")):
            raise HugeInteger("JSON integers beyond int64 are not accepted")


@dataclass(frozen=True, eq=False)
class NumericText:
    """A regular array of JSON numbers, still text: ``source[start:end]`` (brackets included), of ``shape``.

    ``floats`` says whether any number has a fraction or an exponent; ``int_digits`` is the most digits of any
    integer among them (0 if none): enough to refuse what an integer dtype cannot hold before parsing.
    """

    source: bytes
    start: int
    end: int
    shape: tuple[int, ...]
    floats: bool
    int_digits: int

    @property
    def size(self) -> int:
        return prod(self.shape)

    def chunks(self) -> Iterator[np.ndarray]:
        """The numbers in order, a flat array per ~1 MiB of text, each as numpy reads orjson's list (int64 when a
        chunk holds only integers, float64 otherwise; object beyond 64-bit integers)."""
        text, position, end = self.source, self.start, self.end
        while position < end:
            cut = text.rfind(b",", position, position + CHUNK) if position + CHUNK < end else end
            if cut <= position:  # one number longer than a chunk: take text up to the next comma
                cut = text.find(b",", position + CHUNK, end)
                cut = end if cut < 0 else cut
            values = orjson.loads(b"[" + text[position:cut].translate(_BRACKETS) + b"]")
            yield np.asarray(values)
            position = cut + 1
            time.sleep(0)  # hand the GIL over between chunks: the event loop serves small requests meanwhile

    def materialize(self, dtype: np.dtype, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """One array of ``dtype`` and this shape, filled chunk by chunk with ``convert(chunk)`` (which checks and
        casts each chunk, raising what it refuses). Raises ``NotRegular`` if the numbers do not add up."""
        if self.floats and self.int_digits >= 19:  # numpy would read such integers among floats as floats
            raise HugeInteger("JSON integers of 19 digits or more among floats are not accepted")
        out = np.empty(self.size, dtype)
        filled = 0
        for chunk in self.chunks():
            if self.int_digits >= 19 and (chunk.dtype.kind not in "iu" or (chunk.dtype.kind == "u"
                                                                           and (chunk > INT64_MAX).any())):
                raise HugeInteger("JSON integers beyond int64 are not accepted")
            if filled + len(chunk) > len(out):
                raise NotRegular("more numbers than the array's shape holds")
            out[filled:filled + len(chunk)] = convert(chunk)
            filled += len(chunk)
        if filled != len(out):
            raise NotRegular("fewer numbers than the array's shape holds")
        return out.reshape(self.shape)


@dataclass(frozen=True)
class LeanDocument:
    """A parsed body whose big arrays are ``NumericText``; ``numbers`` counts the numbers they hold."""

    value: Any
    numbers: int


def prepare(raw: bytes | bytearray, threshold: int = THRESHOLD) -> LeanDocument | None:
    """The body with its numeric arrays of ``threshold`` bytes or more kept as text; ``None`` when it has none, when
    they are not regular, or when the body is not JSON: parse it with orjson then (which says what is wrong)."""
    if threshold not in _SPANS:
        _SPANS[threshold] = re.compile(rb"\[[\[\]0-9eE+\-.,\s]{%d,}" % (threshold - 1))
    spans = []
    for match in _SPANS[threshold].finditer(raw):
        try:
            spans.append(_Scan(raw, match.start(), match.end()).result())
        except NotRegular:
            return None
    if not spans:
        return None
    pieces, position = [], 0
    for index, span in enumerate(spans):
        pieces += [raw[position:span.start], b'{"\\u0000slotserve":%d}' % index]
        position = span.end
    pieces.append(raw[position:])
    try:
        skeleton = orjson.loads(b"".join(pieces))
    except orjson.JSONDecodeError:  # a span inside a string, or a body that is not JSON: orjson will say which
        return None
    found: list[int] = []
    value = _substitute(skeleton, spans, found)
    if sorted(found) != list(range(len(spans))):  # a placeholder landed inside a string, or was sent by the client
        return None
    return LeanDocument(value, sum(span.size for span in spans))


def _substitute(value: Any, spans: list[NumericText], found: list[int]) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(index := value.get(_KEY), int) and 0 <= index < len(spans):
            found.append(index)
            return spans[index]
        return {key: _substitute(item, spans, found) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, spans, found) for item in value]
    return value


class _Scan:
    """One pass over a span's text, ~1 MiB at a time, cut just after commas so no number is split.

    A regular array of ``ndim`` dimensions reads ``[``*ndim, then numbers separated by gaps ``]``*a ``,`` ``[``*a,
    then ``]``*ndim. After the number at flat index i, the gap closes and reopens one bracket per trailing
    dimension that wraps there: a(i) = #{r : i % P_r == 0}, where P_r is the product of the last r dimensions, and
    P_r is the index of the first gap with a >= r. Checking every gap against that formula proves the array regular
    and gives its shape; the first gap with a >= ndim ends the array.
    """

    def __init__(self, raw: bytes, start: int, stop: int) -> None:
        self.raw, self.start, self.stop = raw, start, stop
        self.ndim = 0
        self.count = 0  # numbers seen
        self.periods: list[int | None] = []  # P_1 .. P_{ndim-1}
        self.pending_closes = 0  # closes after the previous chunk's last number (a gap cut at its comma)
        self.last_class = 4  # as if after a comma: the span opens with '['
        self.floats = False
        self.int_digits = 0

    def result(self) -> NumericText:
        position = self.start
        while position < self.stop:
            cut = self.raw.find(b",", min(position + CHUNK, self.stop - 1), self.stop)
            cut = self.stop if cut < 0 else cut + 1
            end = self._chunk(position, cut)
            time.sleep(0)  # as in ``chunks``: the GIL goes to whoever waits for it, chunk by chunk
            if end is not None:
                return NumericText(self.raw, self.start, end, self._shape(), self.floats, self.int_digits)
            position = cut
        raise NotRegular("the array does not end inside the span")

    def _chunk(self, offset: int, cut: int) -> int | None:
        """Check raw[offset:cut]; the array's end offset if it ends in this chunk, else None.

        With the forbidden neighbours ruled out, every gap between two numbers is exactly ``]``*a ``,`` ``[``*b, so
        a and b follow from the positions of the numbers' ends, the commas and the numbers' starts alone.
        """
        data = np.frombuffer(self.raw, np.uint8, cut - offset, offset)
        classes = _CLASS[data]
        if not classes.all():
            raise NotRegular("a character that is not part of an array of numbers")
        spaces = classes == 5
        kept = np.flatnonzero(~spaces) if spaces.any() else None  # compact position -> offset in this chunk
        compact = classes if kept is None else classes[kept]
        if len(compact) == 0:
            return None
        pairs = np.concatenate(([self.last_class], compact))
        if _BAD_PAIR_CODE[pairs[:-1] * 6 + pairs[1:]].any():
            raise NotRegular("brackets and commas out of place")
        self.last_class = int(compact[-1])
        edges = np.flatnonzero(np.diff(np.concatenate(([0], (compact == 1).view(np.int8), [0]))))
        starts, ends = edges[0::2], edges[1::2] - 1  # each number is compact[start:end + 1]
        if len(starts) == 0:
            raise NotRegular("a stretch of brackets without numbers")
        commas = np.flatnonzero(compact == 4)
        lead = int(starts[0])  # only '[' can come before the first number (after a comma, or the span's start)
        if self.count == 0:
            if lead > MAX_NDIM:
                raise NotRegular(f"more than {MAX_NDIM} dimensions")
            self.ndim = lead
            self.periods = [None] * (self.ndim - 1)
        elif lead != self.pending_closes:
            raise NotRegular("a gap does not reopen what it closed")
        else:
            self._check_gaps(np.array([self.count]), np.array([lead]))
        inner = len(starts) - 1
        gap_closes = commas[:inner] - ends[:inner] - 1
        gap_opens = starts[1:] - commas[:inner] - 1
        ending = np.flatnonzero(gap_closes >= self.ndim)
        last = int(ending[0]) if len(ending) else inner  # this chunk's last number inside the array
        if np.any(gap_opens[:last] != gap_closes[:last]):
            raise NotRegular("a gap does not reopen what it closed")
        self._check_gaps(self.count + 1 + np.arange(last), gap_closes[:last])
        self._numbers(data, starts[:last + 1], ends[:last + 1], kept)
        self.count += last + 1
        after = int(ends[last])
        tail_closes = (int(commas[last]) if last < len(commas) else len(compact)) - after - 1
        if tail_closes >= self.ndim:  # the ndim-th ']' after the last number ends the array
            closing = after + self.ndim
            return offset + int(closing if kept is None else kept[closing]) + 1
        self.pending_closes = tail_closes  # the chunk ends just after a comma: opens follow in the next one
        return None

    def _check_gaps(self, index: np.ndarray, closed: np.ndarray) -> None:
        """Gaps before the numbers at flat ``index`` closed ``closed`` brackets each: learn and check periods."""
        for r in range(1, self.ndim):
            if self.periods[r - 1] is None:
                hits = np.flatnonzero(closed >= r)
                if len(hits):
                    period = int(index[hits[0]])
                    below = self.periods[r - 2] if r > 1 else 1
                    if below is None or period % below:
                        raise NotRegular("rows of different lengths")
                    self.periods[r - 1] = period
        expected = np.zeros(len(index), np.int64)
        for period in self.periods:
            if period is not None:
                expected += index % period == 0
        if np.any(expected != closed):
            raise NotRegular("rows of different lengths")

    def _numbers(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray, kept: np.ndarray | None) -> None:
        """Note whether any number is a float, and the most digits of any integer among the numbers."""
        first = starts if kept is None else kept[starts]
        # each segment runs from a number's first character to the next number's: the gap adds no digit or '.eE'
        floaty = np.logical_or.reduceat(_FLOATY[data], first)
        self.floats = self.floats or bool(floaty.any())
        if not floaty.all():
            digits = np.add.reduceat(_DIGIT[data], first, dtype=np.int64)[~floaty]
            self.int_digits = max(self.int_digits, int(digits.max()))

    def _shape(self) -> tuple[int, ...]:
        periods = [p if p is not None else self.count for p in self.periods]
        if any(self.count % p for p in periods):
            raise NotRegular("rows of different lengths")
        dims, below = [], 1
        for period in periods:
            dims.append(period // below)
            below = period
        return (self.count // below, *reversed(dims))
