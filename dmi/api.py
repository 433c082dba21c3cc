"""``DiffusionMI``: the estimator behind bmi's ``IMutualInformationPointEstimator`` protocol."""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Literal, Optional

import numpy as np

from dmi.config import TEST_FRACTION, EstimatorConfig
from dmi.data import DataError, validate_sample
from dmi.diagnostics import diagnose, emit
from dmi.diffusion import MIEstimate
from dmi.errors import ConfigError
from dmi.forms import FORM_FIELDS
from dmi.spectrum import InformationSpectrum
from dmi.threads import check_threads, thread_summary, torch_threads
from dmi.training import fit, fitted_choices


class DiffusionMI:
    """Diffusion (I-MMSE) MI estimator: trains on a split of the sample, estimates on the rest.

    The training part is split again: ``val_fraction`` of it selects the weights (held-out
    NLL, early stopping) and the Gaussian base's regularisation; the test part is used once,
    for the estimate.

    ``DiffusionMI(architecture="unified"|"moe", **hyperparameters)``; hyperparameters are
    the fields of ``EstimatorConfig``. ``estimate`` returns the direct estimate (nats) unless
    ``form="orthogonal"`` or ``form="cross"`` (the mean of the two; see ``estimate_mi``).
    ``threads`` is torch's CPU threads while it trains and estimates: a count, or ``"auto"``
    (the default: one, more only while cores are free and it pays; see ``dmi.threads``).
    """

    def __init__(
        self,
        architecture: str = "unified",
        test_fraction: float = TEST_FRACTION,
        form: str = "direct",
        threads: int | str | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.config = EstimatorConfig.from_dict({"architecture": architecture, **hyperparameters})
        self.threads = check_threads(threads)
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if form not in FORMS:
            raise ConfigError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        self.test_fraction = test_fraction
        self.form = form
        self.module = None
        self.threads_used: dict[str, Any] = {}

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
        with torch_threads(self.threads) as threads:
            start = time.perf_counter()
            self.module, _ = fit(self.config, x_train, y_train, callbacks=threads.callbacks)
            train_seconds = time.perf_counter() - start
            self.threads_used = thread_summary(threads)
            est = self.module.estimate(x_test, y_test, seed=self.config.seed)
            return est, train_seconds, self.module.spectrum(x_test, y_test, seed=self.config.seed)

    def estimate(self, x, y) -> float:
        """The estimate (nats); its bad signs are raised as ``EstimateWarning``."""
        est, _, spectrum = self.fit_and_estimate(x, y)
        emit(diagnose(est, self.module.selection, spectrum))
        return est.form(self.form)

    def estimate_with_info(self, x, y):
        """bmi's ``EstimateResult``; ``additional_information`` says how the estimate was obtained.

        The three forms with standard errors, the selected and trained steps, whether training
        stopped early or ran out of budget still improving, train and held-out NLL and their
        gap, the forms' disagreement in SE, the preprocessing and Gaussian base chosen, and
        the warnings (also raised as ``EstimateWarning``), ``threads`` (what training ran
        under: ``dmi.threads.thread_summary``), and ``spectrum``: the information
        spectrum on the test part (``dmi.spectrum.InformationSpectrum.as_dict``).
        """
        from bmi.interface import EstimateResult

        start = time.perf_counter()
        est, train_seconds, spectrum = self.fit_and_estimate(x, y)
        diag = diagnose(est, self.module.selection, spectrum)
        emit(diag)
        info = est.as_dict() | diag | fitted_choices(self.module)
        info |= {"train_seconds": train_seconds, "threads": self.threads_used, "form": self.form}
        info["spectrum"] = spectrum.as_dict()
        value = est.form(self.form)
        return EstimateResult(
            mi_estimate=value, time_in_seconds=time.perf_counter() - start, additional_information=info
        )

    def parameters(self):
        """bmi's ``parameters()``: a typed pydantic model (``parameters_model``) of this estimator's values."""
        return parameters_model()(**self.config.as_dict(), test_fraction=self.test_fraction, form=self.form)


FORMS = tuple(FORM_FIELDS)


# The annotations of EstimatorConfig's fields (strings: the module has postponed annotations).
_FIELD_TYPES = {"str": str, "float": float, "int": int, "bool": bool, "int | None": Optional[int]}  # noqa: UP045 (pydantic 1)


@functools.cache
def parameters_model() -> type:
    """The typed pydantic model (bmi's ``BaseModel``) that ``DiffusionMI.parameters()`` returns, built once.

    Generated from ``EstimatorConfig``: one field per hyperparameter with its type, the
    library default, ``metadata["help"]`` as its description and the field's rule as
    pydantic constraints (bounds, or a ``Literal`` of the choices); a root validator applies
    ``EstimatorConfig``'s own checks, the cross-field ones included. Then the estimator's own
    ``test_fraction`` and ``form``. bmi is imported here, not at module level: it pulls in JAX.
    """
    import pydantic
    from bmi.interface import BaseModel

    names = [f.name for f in dataclasses.fields(EstimatorConfig)]

    class CheckedByEstimatorConfig(BaseModel):
        @pydantic.root_validator(skip_on_failure=True)
        def _estimator_config_accepts(cls, values: dict[str, Any]) -> dict[str, Any]:
            EstimatorConfig.from_dict({name: values[name] for name in names})
            return values

    fields: dict[str, Any] = {}
    for f in dataclasses.fields(EstimatorConfig):
        rule = f.metadata.get("rule")
        kind: Any = _FIELD_TYPES[f.type]
        if rule is not None and rule.choices:
            kind = Literal[rule.choices]
        bounds = dict(rule.bounds) if rule is not None else {}
        fields[f.name] = (kind, pydantic.Field(f.default, description=f.metadata["help"], **bounds))
    fields["test_fraction"] = (
        float,
        pydantic.Field(TEST_FRACTION, gt=0.0, lt=1.0, description="share of the sample held out for the estimate"),
    )
    fields["form"] = (
        Literal[FORMS],
        pydantic.Field(
            "direct",
            description="which estimate estimate() returns: the direct form (difference of the two NLL "
            "integrals) or the orthogonal one",
        ),
    )
    return pydantic.create_model(
        "DiffusionMIParameters", __base__=CheckedByEstimatorConfig, __module__=__name__, **fields
    )
