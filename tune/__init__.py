"""Hyperparameter sweeps of the dmi estimator: Ray Tune + Optuna, recorded in MLflow.

The only package that imports Ray, Optuna or MLflow.
"""
