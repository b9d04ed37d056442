"""The lab: params, datasets, training and evaluation, run by the DVC stages under `stages/`."""
