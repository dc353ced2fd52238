"""What ``slotserve status`` draws: a header line and one table row per slot, from ``GET /v1/slots`` records.

Two looks from the same rows. On a terminal: colours, block bars and box rules. Anywhere else (a pipe, a file, a
test): plain ASCII, no escape codes, no box, so ``grep``/``awk`` and people reading a log get the same columns.
Memory figures are MiB (2^20 bytes) with one decimal. A slot a tenant key does not hold arrives as ``occupied``,
without client or model and with figures rounded *up* to a 64th of the slot: shown as "another client" and "<="
figures, never as if they were exact.
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

MIB = 1 << 20
BAR_CELLS = 20
HIDDEN = "occupied"  # the state a tenant key sees for a slot held by another client
STATE_STYLES = {"ready": "green", "empty": "dim", HIDDEN: "blue", "loading": "yellow", "swapping": "yellow",
                "replacing": "yellow", "unloading": "yellow"}
if TYPE_CHECKING:
    from app.cli.status import Server

PLAIN_WIDTH = 120  # the width when not on a terminal: the same columns in every pipe, log and test
COLUMNS = ("SLOT", "DEVICE", "STATE", "CLIENT", "MODEL", "MEMORY", "USED", "LIMIT", "PEAK", "RESIDUE")


@dataclass(frozen=True)
class Look:
    """How to draw: ``fancy`` on a terminal (colours, blocks, rules), plain ASCII otherwise."""

    fancy: bool

    def style(self, style: str) -> str:
        return style if self.fancy else ""

    @property
    def at_most(self) -> str:
        return "≤" if self.fancy else "<="


def console() -> tuple[Console, Look]:
    """stdout as rich sees it (a terminal, or ``FORCE_COLOR``/``TTY_COMPATIBLE`` saying so): fancy there, plain
    ASCII at a fixed width anywhere else."""
    out = Console(highlight=False, emoji=False, markup=False)
    if out.is_terminal:
        return out, Look(fancy=True)
    return Console(highlight=False, emoji=False, markup=False, width=PLAIN_WIDTH, no_color=True), Look(fancy=False)


def show(slots: Sequence[Mapping[str, Any]], url: str, version: str) -> int:
    out, look = console()
    out.print(frame(slots, url, version, look))
    return 0


def watch(server: "Server", slots: Sequence[Mapping[str, Any]], version: str, every: float) -> int:
    """Refresh every ``every`` seconds until Ctrl-C (``KeyboardInterrupt``, left to the caller): in place on a
    terminal, else a new header and table each time (like ``nvidia-smi -l`` into a file). A refresh that fails
    keeps the last answer on screen, says why, and the next one is tried."""
    from app.cli.status import Refused

    out, look = console()
    rates = Rates()
    rates.add(slots)
    when = _now()  # of the last answer: a stale table keeps the time it was true
    shown = frame(slots, server.url, version, look, when, rates.latest(slots))
    live = Live(shown, console=out, auto_refresh=False, transient=False) if look.fancy else None
    if live is None:
        out.print(shown)
    else:
        live.start(refresh=True)
    try:
        while True:
            time.sleep(every)
            problem = None
            try:
                slots, when = server.slots()[0], _now()
                rates.add(slots)
            except Refused as exc:
                problem = str(exc)
            shown = frame(slots, server.url, version, look, when, rates.latest(slots), problem)
            if live is None:
                out.print()
                out.print(shown)
            else:
                live.update(shown, refresh=True)
    finally:
        if live is not None:
            live.stop()


class Rates:
    """Requests per second by slot, from two readings of the slots' ``predictions_total`` (a counter that never
    decreases, added by newer servers): None until two readings exist, or where the server gives no count."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, int]] = {}
        self._rates: dict[int, float | None] = {}
        self.known = False

    def add(self, slots: Sequence[Mapping[str, Any]]) -> None:
        now = time.monotonic()
        for slot in slots:
            count = slot.get("predictions_total")
            if not isinstance(count, int) or isinstance(count, bool):
                self._last.pop(slot["slot"], None)
                self._rates[slot["slot"]] = None
                continue
            self.known = True
            before = self._last.get(slot["slot"])
            good = before is not None and now > before[0] and count >= before[1]
            self._rates[slot["slot"]] = (count - before[1]) / (now - before[0]) if good else None
            self._last[slot["slot"]] = (now, count)

    def latest(self, slots: Sequence[Mapping[str, Any]]) -> dict[int, float | None] | None:
        """The rates to show, or None (no REQ/S column) when the server counts no predictions at all."""
        return {s["slot"]: self._rates.get(s["slot"]) for s in slots} if self.known else None


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def mib(count: int) -> str:
    """Bytes as MiB with one decimal; an amount too small to show as 0.1 is "<0.1", so a held slot never reads 0."""
    if 0 < count < MIB // 20:
        return "<0.1"
    return f"{count / MIB:.1f}"


def device_name(device: str) -> str:
    """``/device:GPU:2`` (or ``/job:localhost/replica:0/task:0/device:GPU:2``) as ``GPU:2``."""
    return device.rsplit("device:", 1)[-1]


def header(slots: Sequence[Mapping[str, Any]], url: str, version: str, look: Look, when: str | None = None) -> Text:
    """``slotserve VERSION at URL  slots in use: N/M  memory: USED / LIMIT MiB`` (and the time, when watching)."""
    used = sum(1 for s in slots if s["state"] != "empty")
    in_use = sum(s["memory"]["in_use_bytes"] for s in slots)
    limit = sum(s["memory"]["limit_bytes"] for s in slots)
    rounded = any(s["state"] == HIDDEN for s in slots)
    line = Text()
    line.append(f"slotserve {version}", style=look.style("bold"))
    line.append(f" at {url}   slots in use: ")
    line.append(f"{used}/{len(slots)}", style=look.style("bold"))
    line.append("   memory: ")
    line.append(f"{look.at_most if rounded else ''}{mib(in_use)} / {mib(limit)} MiB", style=look.style("bold"))
    if when:
        line.append(f"   {when}", style=look.style("dim"))
    return line


def table(slots: Sequence[Mapping[str, Any]], look: Look, rates: Mapping[int, float | None] | None = None) -> Table:
    """One row per slot; a REQ/S column when ``rates`` (requests per second by slot index, None: not known yet)."""
    grid = Table(box=box.SIMPLE_HEAD if look.fancy else None, show_edge=False, pad_edge=False,
                 header_style=look.style("bold"), caption="memory in MiB" if look.fancy else None,
                 caption_justify="right")
    for name in COLUMNS + (("REQ/S",) if rates is not None else ()):
        numeric = name in ("SLOT", "USED", "LIMIT", "PEAK", "RESIDUE", "REQ/S")
        grid.add_column(name, justify="right" if numeric else "left", no_wrap=True,
                        overflow="ellipsis" if name in ("CLIENT", "MODEL") else "fold",
                        max_width=24 if name in ("CLIENT", "MODEL") else None)
    for slot in slots:
        cells = _row(slot, look)
        if rates is not None:
            rate = rates.get(slot["slot"])
            cells.append(Text("-" if rate is None else f"{rate:.1f}"))
        grid.add_row(*cells)
    return grid


def frame(slots: Sequence[Mapping[str, Any]], url: str, version: str, look: Look, when: str | None = None,
          rates: Mapping[int, float | None] | None = None, problem: str | None = None) -> RenderableType:
    """The whole display: header, the table, and (while watching) why the last refresh failed, if it did: the
    table is then the last answer, marked stale."""
    parts: list[RenderableType] = [header(slots, url, version, look, when)]
    if problem:
        parts.append(Text(f"stale, retrying: {problem}", style=look.style("bold red")))
    parts.append(table(slots, look, rates))
    return Group(*parts)


def _row(slot: Mapping[str, Any], look: Look) -> list[Text]:
    state, memory = slot["state"], slot["memory"]
    hidden = state == HIDDEN
    prefix = look.at_most if hidden else ""
    dim = look.style("dim")
    if hidden:
        client, model = Text("another client", style=dim), Text("-", style=dim)
    else:
        client = Text(slot["client"] or "-", style="" if slot["client"] else dim)
        model = Text(slot["model"] or "-", style="" if slot["model"] else dim)
    return [Text(str(slot["slot"])), Text(device_name(slot["device"])),
            Text(state, style=look.style(STATE_STYLES.get(state, ""))), client, model,
            _bar(memory["in_use_bytes"], memory["peak_bytes"], memory["limit_bytes"], look),
            Text(prefix + mib(memory["in_use_bytes"])), Text(mib(memory["limit_bytes"])),
            Text(prefix + mib(memory["peak_bytes"])), Text(prefix + mib(slot["residue_bytes"]))]


def _bar(in_use: int, peak: int, limit: int, look: Look) -> Text:
    """``[#####:::.......] 37%``: in use, then up to the peak, then free, against the slot's limit."""
    share = in_use / limit if limit > 0 else 0.0
    used = _cells(in_use, limit)
    high = max(used, _cells(peak, limit))
    colour = "green" if share < 0.7 else "yellow" if share < 0.9 else "red"
    fill, peaked, free = ("█", "▒", "░") if look.fancy else ("#", ":", ".")
    text = Text("" if look.fancy else "[")
    text.append(fill * used, style=look.style(colour))
    text.append(peaked * (high - used), style=look.style(colour + " dim"))
    text.append(free * (BAR_CELLS - high), style=look.style("dim"))
    text.append(("" if look.fancy else "]") + f" {round(share * 100)}%")
    return text


def _cells(count: int, limit: int) -> int:
    """Bar cells for ``count`` bytes of ``limit``: at least one for any non-zero amount, at most the whole bar."""
    if limit <= 0 or count <= 0:
        return 0
    return min(BAR_CELLS, max(1, round(count / limit * BAR_CELLS)))
