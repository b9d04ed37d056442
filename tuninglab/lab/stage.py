"""Shared entry point of the stage scripts: a dataset and its folders as arguments, one clear error line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tuninglab.lab import params
from tuninglab.lab.params import ParamError
from tuninglab.lab.sources import DataSourceError


def run_stage(main: Callable[..., None], description: str, folders: dict[str, str]) -> None:
    """Parse the dataset argument and the stage's folders, and run `main(dataset, *folders)`.

    The dataset is a dataset group of params.yaml (`params.dataset_groups`).
    `folders` names each folder argument, in order, with its help text: dvc.yaml
    passes the stage's input and output folders, so the paths live there only.
    A bad parameter, an unknown dataset group or an unreachable data source
    ends the stage with one line on stderr and exit code 2, instead of a traceback.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset", help="a dataset group of params.yaml")
    for name, help_text in folders.items():
        parser.add_argument(name, type=Path, help=help_text)
    args = parser.parse_args()
    try:
        params.dataset_spec(params.load(), args.dataset)
        main(args.dataset, *(getattr(args, name) for name in folders))
    except (ParamError, DataSourceError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
