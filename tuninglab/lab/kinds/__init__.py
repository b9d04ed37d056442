"""The data types, one module each: its sources, reader, featurizer, input size and model families.

Each module registers its `DatasetSpec` (`tuninglab.lab.datasets.register`) when
imported. The built-in types come first, in `BUILT_IN`'s order (the order of
reports and tables), whichever module was imported first; any other module in
this package is a data type too and comes after them, by name: adding a type is
one new module here and its group in params.yaml.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

BUILT_IN = ("tabular", "image", "text", "regression")


def load(registry: dict[str, Any]) -> None:
    """Import every data type's module (each registers itself once into `registry`), then put the
    registry in order: the built-in types in `BUILT_IN`'s order, then the others in their order."""
    others = sorted(module.name for module in pkgutil.iter_modules(__path__) if module.name not in BUILT_IN)
    for name in (*BUILT_IN, *others):
        importlib.import_module(f"{__name__}.{name}")
    ordered = {name: registry[name] for name in BUILT_IN if name in registry} | registry
    registry.clear()
    registry.update(ordered)
