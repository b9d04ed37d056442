"""Studies: expand `studies.yaml` into experiments, run them on DVC's queue, collect their results."""
