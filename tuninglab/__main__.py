"""Command line of the lab: `python -m tuninglab study plan <name>`.

`study plan` lists the experiments a study from `studies.yaml` expands to,
with the `dvc exp run --queue` command that queues each one.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from tuninglab import params, studies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuninglab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    study = commands.add_parser("study", help="hyperparameter studies").add_subparsers(
        dest="action", required=True
    )
    plan = study.add_parser("plan", help="list a study's experiments and their dvc commands")
    plan.add_argument("name", help="a study of studies.yaml")
    args = parser.parse_args(argv)
    try:
        experiments = studies.plan(args.name)
    except (studies.StudyError, params.ParamError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for experiment in experiments:
        command = ["dvc", "exp", "run", "--queue", "-n", experiment.name, *experiment.set_args()]
        print(shlex.join(command))
    print(f"# {len(experiments)} experiments in study {args.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
