"""Stage check_params: validate the whole params.yaml, including keys no other stage reads."""

import sys

from tuninglab import params

if __name__ == "__main__":
    try:
        params.load()
    except params.ParamError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print("params.yaml: all parameters valid")
