"""Command line of the lab's studies.

    python -m tuninglab show                   this commit's experiments: what each changed, test accuracy
    python -m tuninglab study plan NAME -j 2   list a study's experiments as dvc commands, estimate its time
    python -m tuninglab study run NAME -j 2    queue what is missing, run it, collect (a tpe or halving
                                               study asks for its experiments as it runs)
    python -m tuninglab study run NAME --backend ray --address auto   ... on a Ray cluster, one task each
    python -m tuninglab study collect          write results/experiments.csv and results/curves.csv
    python -m tuninglab study collect --rev C  ... from the experiments of baseline commit C instead of HEAD
    python -m tuninglab study collect --remote origin   ... after pulling them from a git remote
    python -m tuninglab report                 write reports/ from the collected results

Studies are declared in studies.yaml.
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
from collections import Counter
from pathlib import Path

from tuninglab.lab import params
from tuninglab.report import build, owned, results, show
from tuninglab.schema import CURVES_FILE, FAILED, RESULTS_FILE, SUCCESS
from tuninglab.studies import cluster, collect, estimate, runner, search, spec

PLAN_HEAD = 20  # the experiments `study plan` lists of a study larger than its limit


def _collect(force: bool = False, rev: str = "HEAD", remote: str | None = None) -> None:
    if remote:
        cluster.pull_experiments(remote, rev)
    strategies = {name: spec.strategy_of(study) for name, study in spec.load().items()}
    frame, replaced = collect.collect(strategies, force=force, rev=rev)
    if replaced:
        print(replaced)
    counts = frame.drop_duplicates("experiment")["study"].value_counts().to_dict()
    print(f"{RESULTS_FILE}: {len(frame)} rows; experiments per study {counts}")
    print(f"{CURVES_FILE}: per-epoch curves of the finished runs")


def _plan(name: str, jobs: int, allow_large: bool) -> None:
    """Print a study's experiments as `dvc exp run --queue` commands, then its estimated wall time.

    A study larger than its limit is refused (`estimate.check_size`) unless
    `allow_large`; then only its first `PLAN_HEAD` experiments are listed, and
    it is estimated from a sample of its experiments.
    """
    baseline = params.load()
    study = spec.definition(name)
    if spec.strategy_of(study) in spec.SEARCHES:
        print("\n".join(search.describe(spec.parse(name, study), baseline, jobs)))
        return
    total = estimate.check_size(name, baseline, jobs, allow_large)
    large = total > spec.limit(name, study)
    experiments = spec.head(name, study, baseline, PLAN_HEAD) if large else spec.plan(name, baseline=baseline)
    for experiment in experiments:
        print(shlex.join(["dvc", "exp", "run", "--queue", "-n", experiment.name, *experiment.set_args()]))
    if large:
        print(f"... and up to {total - len(experiments):,} more: {total:,} experiments in all")
    try:
        sample = spec.sample(name, study, baseline) if large else experiments
        print(estimate.describe(sample, baseline, jobs, total=total if large else None))
    except spec.StudyError as err:  # the plan stands without an estimate
        print(f"no wall-time estimate: {err}")


def _check_jobs(jobs: int) -> None:
    """Refuse a worker count below 1 before any work starts."""
    if jobs < 1:
        raise spec.StudyError(f"--jobs: {jobs} is not allowed; expected an integer >= 1")


def _check_seconds(option: str, seconds: float) -> None:
    """Refuse a number of seconds that is not finite and above 0, before any work starts."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise spec.StudyError(f"{option}: {seconds:g} is not allowed; expected a number of seconds > 0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuninglab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="this commit's experiments: what each changed, test accuracy")
    study = commands.add_parser("study", help="hyperparameter studies").add_subparsers(
        dest="action", required=True
    )
    plan = study.add_parser("plan", help="list a study's experiments and their dvc commands")
    plan.add_argument("name", help="a study of studies.yaml")
    plan.add_argument("-j", "--jobs", type=int, default=1, help="workers the estimate assumes (default 1)")
    run = study.add_parser("run", help="run a study on DVC's queue or a Ray cluster, then collect")
    for command in (plan, run):
        command.add_argument(
            "--allow-large",
            action="store_true",
            help=f"go ahead with a study of more experiments than its max_experiments "
            f"(default {spec.MAX_EXPERIMENTS:,})",
        )
    run.add_argument("name", help="a study of studies.yaml")
    run.add_argument(
        "-j", "--jobs", type=int, help="parallel workers (default 1; on Ray: as many as the cluster holds)"
    )
    run.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="DVC's queue on this machine, or one Ray task per experiment (default: %(default)s)",
    )
    run.add_argument("--address", help="ray: the cluster, auto or HOST:PORT (default: Ray's own choice)")
    run.add_argument("--cpus-per-trial", type=float, metavar="N", help="ray: CPUs per experiment (default 1)")
    run.add_argument("--gpus-per-trial", type=float, metavar="G", help="ray: GPUs per experiment (default 0)")
    run.add_argument(
        "--connect-timeout",
        type=float,
        metavar="S",
        help=f"ray: seconds a cluster at --address gets to answer (default {cluster.CONNECT_SECONDS:g})",
    )
    gather = study.add_parser("collect", help=f"write {RESULTS_FILE} and {CURVES_FILE}")
    for command in (run, gather):
        command.add_argument(
            "--force", action="store_true", help="replace results holding experiments the new ones lack"
        )
    gather.add_argument(
        "--rev",
        default="HEAD",
        help="the baseline commit whose experiments to collect (default: %(default)s)",
    )
    gather.add_argument("--remote", help="first pull the experiments from this git remote (dvc exp pull)")
    writer = commands.add_parser("report", help="write the study report from the collected results")
    writer.add_argument("--results", type=Path, default=results.RESULTS_DIR, help="default: %(default)s")
    writer.add_argument(
        "--out",
        type=Path,
        default=build.REPORTS_DIR,
        help="a new or empty folder, or an earlier report (default: %(default)s)",
    )
    writer.add_argument(
        "--force", action="store_true", help="replace a report made from experiments these results lack"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            print(show.render())
        elif args.command == "report":
            replaced = build.write(args.results, args.out, force=args.force)
            if replaced:
                print(replaced)
            print(f"{args.out}: summary.md, summary.html, explorer.html and the tables written")
        elif args.action == "plan":
            _check_jobs(args.jobs)
            _plan(args.name, args.jobs, args.allow_large)
        elif args.action == "run":
            if args.jobs is not None:
                _check_jobs(args.jobs)
            ray_only = {
                "--address": args.address,
                "--cpus-per-trial": args.cpus_per_trial,
                "--gpus-per-trial": args.gpus_per_trial,
                "--connect-timeout": args.connect_timeout,
            }
            given = [option for option, value in ray_only.items() if value is not None]
            if args.backend != "ray" and given:
                raise spec.StudyError(f"{', '.join(given)}: only for --backend ray, not {args.backend}")
            if args.connect_timeout is not None:
                _check_seconds("--connect-timeout", args.connect_timeout)
            remote = None
            try:
                try:
                    searching = spec.strategy_of(spec.definition(args.name)) in spec.SEARCHES
                except spec.StudyError:  # no such study: the runner's checks, its options' first, say so
                    searching = False
                on_ray = {
                    "address": args.address,
                    "cpus": 1.0 if args.cpus_per_trial is None else args.cpus_per_trial,
                    "gpus": args.gpus_per_trial or 0.0,
                    "connect_timeout": (
                        cluster.CONNECT_SECONDS if args.connect_timeout is None else args.connect_timeout
                    ),
                }
                if searching and args.backend == "ray":
                    counts, found = search.run_ray(args.name, args.jobs, **on_ray, force=args.force)
                    remote = found.git
                elif searching:
                    counts = search.run_local(args.name, args.jobs or 1, force=args.force)
                elif args.backend == "ray":
                    found, outcomes = cluster.run(
                        args.name, args.jobs, **on_ray, allow_large=args.allow_large
                    )
                    counts, remote = Counter(outcome.status for outcome in outcomes), found.git
                else:
                    counts = runner.run(
                        args.name, args.jobs or 1, allow_large=args.allow_large, force=args.force
                    )
            except KeyboardInterrupt as stopped:  # the runner stopped its workers and said how to resume
                return 128 + getattr(stopped, "signum", signal.SIGINT)
            print(f"study {args.name}: {counts[SUCCESS]} succeeded, {counts[FAILED]} failed")
            _collect(force=args.force, remote=remote)
        else:
            _collect(force=args.force, rev=args.rev, remote=args.remote)
    except (
        spec.StudyError,
        params.ParamError,
        results.ReportError,
        owned.OverwriteError,
        RuntimeError,
    ) as err:
        print("\n".join(f"error: {line}" for line in str(err).splitlines()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
