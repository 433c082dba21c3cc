"""MLflow recording of sweeps: parent and child runs, artifacts, the registered best model.

Used by the sweep driver through ``SweepTracker``; read back by ``dmi-tune report``.
Names are imported lazily so that loading a registered model (``tune.tracking.registry``)
does not pull in Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tune.tracking.tracker import SweepTracker
    from tune.tracking.uri import TrackingUnavailable

__all__ = ["SweepTracker", "TrackingUnavailable"]


def __getattr__(name: str) -> Any:
    if name == "SweepTracker":
        from tune.tracking.tracker import SweepTracker

        return SweepTracker
    if name == "TrackingUnavailable":
        from tune.tracking.uri import TrackingUnavailable

        return TrackingUnavailable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
