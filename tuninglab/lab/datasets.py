"""The dataset registry: one spec per data type; every other module looks a dataset up here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the lab knows about one data type."""

    name: str


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a data type to the lab (a test may register a toy one)."""
    REGISTRY[spec.name] = spec
    return spec


def dataset_names() -> tuple[str, ...]:
    """The registered data types, in the order they were registered (the order of reports and tables)."""
    return tuple(REGISTRY)


for _name in ("tabular", "image", "text"):
    register(DatasetSpec(_name))
