"""dmi: diffusion (I-MMSE) mutual-information estimation.

The estimator core: ``DiffusionMI`` (bmi's estimator protocol), the Lightning module,
the Gaussian oracle and the benchmark tasks. No Ray or MLflow here.
"""

from dmi.api import DiffusionMI
from dmi.config import ConfigError, EstimatorConfig
from dmi.data import DataError
from dmi.denoisers import Denoiser, GaussianDenoiser
from dmi.diffusion import LogSNRProposal, MIEstimate
from dmi.estimation import estimate_mi

__all__ = [
    "ConfigError",
    "DataError",
    "Denoiser",
    "DiffusionMI",
    "EstimatorConfig",
    "GaussianDenoiser",
    "LogSNRProposal",
    "MIEstimate",
    "estimate_mi",
]
__version__ = "0.1.0"
