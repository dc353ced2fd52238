"""Admission: whether a store entry may be loaded into a slot at all, decided from its files before any slot is
touched or claimed."""

from dataclasses import dataclass

from app.errors import ModelTooLarge, ModelUnsafe
from app.registry.footprint import Footprint, footprint
from app.registry.store import ModelFile


@dataclass(frozen=True)
class Admission:
    """An admitted model's footprint, and the bytes the swap strategy plans with."""

    footprint: Footprint
    estimate: int


def admit(model_file: ModelFile, limit: int, margin: float, trust_ops: bool) -> Admission:
    """Refuse a model that cannot fit a slot of ``limit`` bytes even on its own (``ModelTooLarge``), or a SavedModel
    whose graph would run deny-listed ops unless the operator trusts them (``ModelUnsafe``). Reads files."""
    needs = footprint(model_file, max_graph_bytes=limit)
    if needs.denied_ops and not trust_ops:
        raise ModelUnsafe(
            f"Model '{model_file.name}' is refused: its graph would run {', '.join(needs.denied_ops[:5])}, "
            "which reach files, Python or other hosts (an operator who trusts the store can allow them with "
            "--trust-savedmodel-ops).", model=model_file.name, ops=list(needs.denied_ops))
    # tensors (variables and constants) plus the margin, and the graph or config the load also holds
    estimate = int(needs.tensor_bytes * (1 + margin)) + needs.graph_bytes
    if estimate > limit:
        raise ModelTooLarge(f"Model '{model_file.name}' needs about {estimate} bytes but a slot holds {limit} bytes.",
                            model=model_file.name, needed_bytes=estimate, limit_bytes=limit)
    return Admission(needs, estimate)
