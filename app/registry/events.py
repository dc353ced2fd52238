"""What the registry tells an observer (the API's metrics) as it happens: loads done, batches run.

One ``RegistryEvents`` per registry, shared with its slots (which hand ``batch_ran`` to each model's batch queue), so a
listener attached after the registry was built (the app's, at start-up) hears everything from then on. Nobody
listens by default. The registry never imports the metrics library: it only calls a listener.
"""

from typing import Protocol


class RegistryListener(Protocol):
    def model_loaded(self, strategy: str, seconds: float) -> None: ...

    def batch_ran(self, rows: int) -> None: ...


class RegistryEvents:
    """Forwards each event to ``listener``, when there is one."""

    __slots__ = ("listener",)

    def __init__(self) -> None:
        self.listener: RegistryListener | None = None

    def model_loaded(self, strategy: str, seconds: float) -> None:
        """A load, swap or restore succeeded after ``seconds``; ``strategy``: load, side_by_side, replace,
        restore or takeover."""
        if self.listener is not None:
            self.listener.model_loaded(strategy, seconds)

    def batch_ran(self, rows: int) -> None:
        """One call of a model's function ran a batch of ``rows`` rows."""
        if self.listener is not None:
            self.listener.batch_ran(rows)
