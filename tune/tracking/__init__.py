"""MLflow recording of sweeps (``tracker.SweepTracker``), read back by ``dmi-tune report``."""
