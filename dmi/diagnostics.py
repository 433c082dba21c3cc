"""How an estimate was obtained, and the signs that it should not be trusted.

One function builds the record every path reports (library, ``dmi estimate --json``, the
results JSONL, MLflow); another turns its bad signs into one-line warnings, so a wrong
estimate looks wrong wherever it is read.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from dmi.diffusion import MIEstimate
from dmi.errors import EstimateWarning
from dmi.selection import SelectionReport
from dmi.spectrum import InformationSpectrum

# Thresholds of the warnings, in standard errors.
DISAGREEMENT_SE = 4.0
BELOW_ZERO_SE = 2.0



def diagnose(
    est: MIEstimate, selection: SelectionReport | None, spectrum: InformationSpectrum | None = None
) -> dict[str, Any]:
    """Selection facts, train/held-out NLL and their gap, the forms' disagreement in SE, and,
    with a ``spectrum``, whether the log-SNR window covers the information."""
    combined = math.hypot(est.mi_stderr, est.mi_orthogonal_stderr)
    disagreement = abs(est.mi - est.mi_orthogonal) / combined if combined > 0 else float("nan")
    out: dict[str, Any] = {
        "forms_disagreement_se": disagreement,
        "mi_over_stderr": est.mi / est.mi_stderr if est.mi_stderr > 0 else float("nan"),
        "held_out_selection": selection is not None,
    }
    if spectrum is not None:
        out["window_tail_nats"] = spectrum.tail_nats
        out["window_covers_information"] = spectrum.covers_window()
        out["window"] = list(spectrum.window)
    if selection is not None:
        out.update(selection.as_dict())
        # Not a warning: a rise after the selected step is what early stopping answers, and
        # keeping the untrained model (step 0) is right where the Gaussian base is the truth.
        last = selection.val_history[-1][1] if selection.val_history else float("nan")
        out["heldout_nll_rise"] = last - selection.best_val_loss
        out["kept_untrained_model"] = selection.selected_step == 0
    out["warnings"] = warning_messages(est, out)
    return out


def warning_messages(est: MIEstimate, diag: dict[str, Any]) -> list[str]:
    messages = []
    if est.mi < -BELOW_ZERO_SE * est.mi_stderr:
        messages.append(
            f"the direct estimate {est.mi:.3f} ± {est.mi_stderr:.3f} nats is below zero by "
            f"{-est.mi / est.mi_stderr:.1f} SE: the conditional model does not generalise (overfitting)"
        )
    if diag["forms_disagreement_se"] > DISAGREEMENT_SE:
        messages.append(
            f"the direct ({est.mi:.3f}) and orthogonal ({est.mi_orthogonal:.3f}) forms disagree by "
            f"{diag['forms_disagreement_se']:.1f} combined SE: the denoisers are not near their optimum"
        )
    if diag.get("window_covers_information") is False:
        low, high = diag["window"]
        messages.append(
            f"the MI integrand is not near zero at the ends of the log-SNR window [{low:g}, {high:g}]: "
            f"at least about {diag['window_tail_nats']:.3f} nats lie outside it; widen logsnr_scale or logsnr_clip"
        )
    if not diag["held_out_selection"]:
        return messages
    if diag.get("still_improving"):
        messages.append(
            f"the held-out NLL was still improving at the step cap ({diag['trained_steps']} steps): raise max_steps"
        )
    return messages


def emit(diag: dict[str, Any]) -> None:
    """Each warning of ``diag`` as a ``warnings.warn`` (library callers see them by default)."""
    for message in diag.get("warnings", []):
        warnings.warn(f"dmi: {message}", EstimateWarning, stacklevel=3)
