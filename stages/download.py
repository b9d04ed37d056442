"""Stage download: fetch one dataset's raw file and its provenance into data/raw/<dataset>/.

A text source's rows with empty text or label are dropped; provenance.json
counts them (`dropped_empty_rows`) and the stage says how many.
"""

from pathlib import Path

from tuninglab.lab import params, sources
from tuninglab.lab.files import atomic_dir, write_json
from tuninglab.lab.stage import run_stage


def main(dataset: str) -> None:
    source = params.load()[dataset]["data"]["source"]
    with atomic_dir(Path("data/raw") / dataset) as out:
        record = sources.fetch(dataset, source, out)
        write_json(out / "provenance.json", record)
    dropped = record.get("dropped_empty_rows")
    note = f"; dropped {dropped} rows with empty text or label" if dropped else ""
    print(f"{dataset}: {record['rows']} rows from {record['source']}, classes {record['classes']}{note}")


if __name__ == "__main__":
    run_stage(main, __doc__)
