"""Clients -> slots: slot lifecycle, per-slot locks and threads, the model store. Imports TensorFlow."""

from app.registry.batching import BatchPolicy
from app.registry.lifecycle import Phase
from app.registry.records import ClientRecord, LoadResult, SlotRecord, UnloadResult
from app.registry.registry import Registry
from app.registry.slot import Memory, ModelView
from app.registry.store import ModelFile, ModelStore

__all__ = ["BatchPolicy", "ClientRecord", "LoadResult", "Memory", "ModelFile", "ModelView", "ModelStore", "Phase", "Registry", "SlotRecord",
           "UnloadResult"]
