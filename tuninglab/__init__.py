"""Tuning Lab: how each hyperparameter changes what a PyTorch model learns on tabular, image and text data."""
