"""``DiffusionMI``: the estimator behind bmi's ``IMutualInformationPointEstimator`` protocol."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np

from dmi.config import TEST_FRACTION, EstimatorConfig
from dmi.data import DataError, validate_sample
from dmi.diagnostics import diagnose, emit
from dmi.diffusion import MIEstimate
from dmi.spectrum import InformationSpectrum
from dmi.threads import check_threads, torch_threads
from dmi.training import fit, fitted_choices


class DiffusionMI:
    """Diffusion (I-MMSE) MI estimator: trains on a split of the sample, estimates on the rest.

    The training part is split again: ``val_fraction`` of it selects the weights (held-out
    NLL, early stopping) and the Gaussian base's regularisation; the test part is used once,
    for the estimate.

    ``DiffusionMI(architecture="unified"|"moe", **hyperparameters)``; hyperparameters are
    the fields of ``EstimatorConfig``. ``estimate`` returns the direct estimate (nats) unless
    ``form="orthogonal"``. ``threads`` caps torch's CPU threads while it trains and
    estimates (default ``dmi.threads.DEFAULT_THREADS``, one: see ``dmi.threads``).
    """

    def __init__(
        self,
        architecture: str = "unified",
        test_fraction: float = TEST_FRACTION,
        form: str = "direct",
        threads: int | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.config = EstimatorConfig.from_dict({"architecture": architecture, **hyperparameters})
        self.threads = check_threads(threads)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if form not in ("direct", "orthogonal"):
            raise ValueError(f"form must be 'direct' or 'orthogonal', got {form!r}")
        self.test_fraction = test_fraction
        self.form = form
        self.module = None

    def split(self, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Shuffle by the config's seed and hold out ``test_fraction`` for estimation."""
        x, y = validate_sample(x, y, min_samples=4)
        n_test = int(round(len(x) * self.test_fraction))
        if n_test < 2 or len(x) - n_test < 2:
            raise DataError(f"too few samples to split into training and test sets: {len(x)}")
        order = np.random.default_rng(self.config.seed).permutation(len(x))
        test, train = order[:n_test], order[n_test:]
        return x[train], y[train], x[test], y[test]

    def fit_and_estimate(self, x, y) -> tuple[MIEstimate, float, InformationSpectrum]:
        """Train, then the estimate and the information spectrum on the test part."""
        x_train, y_train, x_test, y_test = self.split(x, y)
        with torch_threads(self.threads):
            start = time.perf_counter()
            self.module, _ = fit(self.config, x_train, y_train)
            train_seconds = time.perf_counter() - start
            est = self.module.estimate(x_test, y_test, seed=self.config.seed)
            return est, train_seconds, self.module.spectrum(x_test, y_test, seed=self.config.seed)

    def estimate(self, x, y) -> float:
        """The estimate (nats); its bad signs are raised as ``EstimateWarning``."""
        est, _, spectrum = self.fit_and_estimate(x, y)
        emit(diagnose(est, self.module.selection, spectrum))
        return est.mi if self.form == "direct" else est.mi_orthogonal

    def estimate_with_info(self, x, y):
        """bmi's ``EstimateResult``; ``additional_information`` says how the estimate was obtained.

        Both forms with standard errors, the selected and trained steps, whether training
        stopped early or ran out of budget still improving, train and held-out NLL and their
        gap, the forms' disagreement in SE, the preprocessing and Gaussian base chosen, and
        the warnings (also raised as ``EstimateWarning``), and ``spectrum``: the information
        spectrum on the test part (``dmi.spectrum.InformationSpectrum.as_dict``).
        """
        from bmi.interface import EstimateResult

        start = time.perf_counter()
        est, train_seconds, spectrum = self.fit_and_estimate(x, y)
        diag = diagnose(est, self.module.selection, spectrum)
        emit(diag)
        info = est.as_dict() | diag | fitted_choices(self.module)
        info |= {"train_seconds": train_seconds, "form": self.form, "spectrum": spectrum.as_dict()}
        value = est.mi if self.form == "direct" else est.mi_orthogonal
        return EstimateResult(
            mi_estimate=value, time_in_seconds=time.perf_counter() - start, additional_information=info
        )

    def parameters(self):
        return _parameters_model()(**self.config.as_dict(), test_fraction=self.test_fraction, form=self.form)


def _parameters_model():
    """A pydantic model (bmi's base) with one field per hyperparameter, built once."""
    global _PARAMS
    if _PARAMS is None:
        import pydantic
        from bmi.interface import BaseModel

        defaults = EstimatorConfig().as_dict() | {"test_fraction": TEST_FRACTION, "form": "direct"}
        hints = {f.name: f.type for f in dataclasses.fields(EstimatorConfig)}
        fields = {
            name: ((Optional[int] if hints.get(name) == "int | None" else type(value)), value)  # noqa: UP045 (pydantic 1)
            for name, value in defaults.items()
        }
        _PARAMS = pydantic.create_model("DiffusionMIParameters", __base__=BaseModel, **fields)
    return _PARAMS


_PARAMS = None
