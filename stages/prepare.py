"""Stage prepare: stratified splits and train-fitted preprocessing into data/prepared/<dataset>/.

Outputs: data.npz (x_/y_ arrays per split), meta.json (classes, the chance
rate `chance_accuracy`, input shape, preprocessing, split sizes) and, for
text, vocabulary.txt (one token a line, line number = token id). A class with
too few rows for the split shares ends the stage before anything is written.
"""

from pathlib import Path

from tuninglab.lab import params, prepare
from tuninglab.lab.files import atomic_dir, save_arrays
from tuninglab.lab.stage import run_stage


def main(dataset: str) -> None:
    p = params.load()
    arrays, meta = prepare.prepare(dataset, Path("data/raw") / dataset, p["split"], p[dataset]["data"])
    vocabulary = meta.pop("vocabulary", None)
    with atomic_dir(Path("data/prepared") / dataset) as out:
        save_arrays(out, arrays, meta)
        if vocabulary is not None:
            (out / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n")
    sizes = ", ".join(f"{name} {split['rows']}" for name, split in meta["splits"].items())
    print(f"{dataset}: {sizes}; input shape {meta['input_shape']}; chance accuracy {meta['chance_accuracy']}")


if __name__ == "__main__":
    run_stage(main, __doc__)
