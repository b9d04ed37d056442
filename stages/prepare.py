"""Stage prepare: stratified splits and train-fitted preprocessing, from the raw folder into the prepared one.

Outputs: data.npz (x_/y_ arrays per split), meta.json (the data type `kind`
and its `task`, classes, the chance rate `chance_accuracy`, input shape,
preprocessing, split sizes; for a regression the target's scaling and the
reference `chance_r2` instead of classes) and, for text, vocabulary.txt (one
token a line, line number = token id). A class with too few rows for the split shares ends the stage before
anything is written.

Usage: python -m stages.prepare DATASET RAW_DIR PREPARED_DIR
"""

from pathlib import Path

from tuninglab.lab import params, prepare
from tuninglab.lab.files import atomic_dir, save_arrays, write_text
from tuninglab.lab.stage import run_stage


def main(dataset: str, raw_dir: Path, prepared_dir: Path) -> None:
    """Split and preprocess the raw file in `raw_dir`; replace `prepared_dir` with the arrays and metadata."""
    p = params.load()
    spec = params.dataset_spec(p, dataset)
    arrays, meta = prepare.PREPARERS[spec.task.name](spec, raw_dir, p["split"], p[dataset]["data"], dataset)
    vocabulary = meta.pop("vocabulary", None)
    with atomic_dir(prepared_dir) as out:
        save_arrays(out, arrays, meta)
        if vocabulary is not None:
            write_text(out / "vocabulary.txt", "\n".join(vocabulary) + "\n")
    sizes = ", ".join(f"{name} {split['rows']}" for name, split in meta["splits"].items())
    chance = f"{spec.task.words.short} {meta[spec.task.chance_metric]}"
    print(f"{dataset}: {sizes}; input shape {meta['input_shape']}; chance {chance}")


if __name__ == "__main__":
    run_stage(
        main,
        __doc__,
        {
            "raw_dir": "the download stage's folder",
            "prepared_dir": "the folder to write (replaced as a whole)",
        },
    )
