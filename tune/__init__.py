"""Hyperparameter sweeps of the dmi estimator: Ray Tune + Optuna, recorded in MLflow (the one package using them)."""
