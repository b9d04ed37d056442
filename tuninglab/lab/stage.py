"""Shared entry point of the stage scripts: one dataset argument, one clear error line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.params import ParamError
from tuninglab.lab.sources import DataSourceError


def run_stage(main: Callable[[str], None], description: str) -> None:
    """Parse the dataset argument and run `main(dataset)`.

    A bad parameter or an unreachable data source ends the stage with one line
    on stderr and exit code 2, instead of a traceback.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset", choices=dataset_names())
    args = parser.parse_args()
    try:
        main(args.dataset)
    except (ParamError, DataSourceError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
