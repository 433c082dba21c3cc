"""A picture of an information spectrum, written atomically (for the CLI, benchmarks and MLflow)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dmi.spectrum import InformationSpectrum
from dmi.tempfiles import atomic_path, new_file_mode


def plot_spectrum(
    spectrum: InformationSpectrum,
    path: str | os.PathLike,
    references: Sequence[tuple[str, InformationSpectrum]] = (),
    title: str = "",
    true_mi: float | None = None,
) -> Path:
    """Two panels over log-SNR: the two denoising errors, then the MI integrand with ±2 SE.

    ``references`` (label, spectrum) are drawn dashed in the lower panel: the Gaussian base,
    an oracle, another architecture. Thresholds are vertical lines; the window is the x range.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    alpha = spectrum.logsnr
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, constrained_layout=True)
    top.plot(alpha, spectrum.mmse_x, label="without y: E‖ε − ε̂(z)‖²")
    top.plot(alpha, spectrum.mmse_x_given_y, label="with y: E‖ε − ε̂(z, y)‖²")
    top.set_ylabel("denoising error (ε-space)")
    top.legend(loc="upper left", fontsize=8)
    low = [g - 2 * s for g, s in zip(spectrum.gap, spectrum.gap_stderr, strict=True)]
    high = [g + 2 * s for g, s in zip(spectrum.gap, spectrum.gap_stderr, strict=True)]
    bottom.fill_between(alpha, low, high, alpha=0.25, color="C0", linewidth=0)
    bottom.plot(alpha, spectrum.gap, color="C0", label=f"direct integrand (∫ = {spectrum.integral():.3f} nats)")
    bottom.plot(alpha, spectrum.gap_orthogonal, color="C1", linewidth=1, label="orthogonal integrand")
    for i, (label, ref) in enumerate(references):
        bottom.plot(ref.logsnr, ref.gap, linestyle="--", color=f"C{i + 2}", label=f"{label} (∫ = {ref.integral():.3f})")
    bottom.axhline(0.0, color="0.6", linewidth=0.8)
    for axis in (top, bottom):
        for t in spectrum.thresholds:
            axis.axvline(t, color="0.3", linestyle=":", linewidth=1)
    bottom.set_xlabel("log-SNR α (the estimator's window)")
    bottom.set_ylabel("½ MMSE gap (nats per unit α)")
    bottom.legend(loc="upper left", fontsize=8)
    heading = title or "information spectrum"
    if true_mi is not None:
        heading += f" (true MI {true_mi:.3f})"
    if not spectrum.covers_window():
        heading += f"\nwindow misses about {spectrum.tail_nats:.3f} nats at its edges"
    top.set_title(heading, fontsize=10)
    path = Path(path)
    try:
        with atomic_path(path, mode=new_file_mode()) as tmp:  # the temporary is private; the picture is not
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
