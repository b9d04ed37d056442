"""Stage check_params: validate the whole params.yaml and check that this machine can run it.

Runs before every other stage (the download stages depend on its output), so
a typo, a bad value, `train.device: cuda` without a GPU or settings too big
for this machine's memory end the run before DVC removes any stage's outputs.

Usage: python -m stages.check_params OUT  (OUT: the marker file it writes when all is well)
"""

import sys
from pathlib import Path

from tuninglab.lab import params, resources
from tuninglab.lab.files import write_text

if __name__ == "__main__":
    try:
        resources.check(params.load())
    except params.ParamError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    write_text(Path(sys.argv[1]), "params.yaml checked\n")
    print("params.yaml: all parameters valid")
