"""dmi: diffusion (I-MMSE) mutual-information estimation.

The estimator core: ``DiffusionMI`` (bmi's estimator protocol), the Lightning module,
the Gaussian oracle and the benchmark tasks. No Ray or MLflow here. Names are imported
lazily so that ``dmi --help`` does not pay for Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DiffusionMI": "dmi.api",
    "ConfigError": "dmi.config",
    "EstimatorConfig": "dmi.config",
    "DataError": "dmi.data",
    "Denoiser": "dmi.denoisers",
    "GaussianDenoiser": "dmi.denoisers",
    "LogSNRProposal": "dmi.diffusion",
    "MIEstimate": "dmi.diffusion",
    "estimate_mi": "dmi.estimation",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dmi' has no attribute {name!r}")
