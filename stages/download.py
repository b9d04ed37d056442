"""Stage download: fetch one dataset's raw file and its provenance into its raw folder (data/raw/<dataset>/).

A text source's rows with empty text or label (a tabular CSV's rows without a
label, a regression CSV's without a target) are dropped; provenance.json counts
them (`dropped_empty_rows`) and the stage says how many.

Usage: python -m stages.download DATASET RAW_DIR
"""

from pathlib import Path

from tuninglab.lab import params, sources
from tuninglab.lab.files import atomic_dir, write_json
from tuninglab.lab.stage import run_stage


def main(dataset: str, raw_dir: Path) -> None:
    """Replace `raw_dir` with the raw file fetched from `<dataset>.data.source` and its provenance.json."""
    p = params.load()
    spec = params.dataset_spec(p, dataset)
    with atomic_dir(raw_dir) as out:
        record = {"dataset": dataset, **sources.fetch(spec, p[dataset]["data"]["source"], out)}
        write_json(out / "provenance.json", record)
    dropped = record.get("dropped_empty_rows")
    note = f"; dropped {dropped} rows with empty {spec.empty_row}" if dropped else ""
    what = f"{spec.task.raw_target} {record[spec.task.raw_target]}"
    print(f"{dataset}: {record['rows']} rows from {record['source']}, {what}{note}")


if __name__ == "__main__":
    run_stage(main, __doc__, {"raw_dir": "the folder to write (replaced as a whole)"})
