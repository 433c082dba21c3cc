"""Held-out model selection: early stopping on the label-free NLL, keeping the best weights.

A later step replaces the selected one only if its held-out NLL is lower by more than
``min_se`` standard errors of the paired per-point differences (every validation scores the
same points on the same noise, so the pairs are clean) and by more than ``min_delta`` nats.
Noise in a few hundred held-out points otherwise picks a network that is no better than
the Gaussian base it started from, which costs MI on Gaussian tasks (measured in
``benchmarks/results/defaults-rationale.md``).
Training stops after ``patience`` validations without such an improvement, and the
selected weights are restored. The weights copied are the ones validation saw: with EMA
on, Lightning's ``EMAWeightAveraging`` has swapped the average in for the validation epoch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch

from dmi.domain import DomainReference

MONITOR = "val_loss"
PROBE_ROWS = 4096


@dataclass
class SelectionReport:
    """How the returned weights were chosen (steps are optimizer steps)."""

    selected_step: int
    trained_steps: int
    max_steps: int
    stopped_early: bool
    best_val_loss: float
    val_history: list[tuple[int, float]] = field(default_factory=list)
    fit_gap: dict[str, float] = field(default_factory=dict)

    @property
    def still_improving(self) -> bool:
        """Out of budget with the best score at the last validation: more steps would likely help."""
        return not self.stopped_early and bool(self.val_history) and self.selected_step == self.val_history[-1][0]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("val_history")
        out.update(out.pop("fit_gap"))
        out["still_improving"] = self.still_improving
        out["n_validations"] = len(self.val_history)
        return out


class HeldOutSelection(pl.Callback):
    """Select the weights with a significantly lower held-out ``val_loss``; stop after ``patience``.

    At every validation it also scores a probe of the training rows (as many as the
    validation set, at most ``PROBE_ROWS``) on the same grid, so the train/held-out NLL gap,
    the signature of overfitting, is known at every step. It adds ``selected_step``,
    ``best_val_loss``, ``trained_steps``, ``train_nll``, ``nll_gap`` and ``early_stopped`` to
    the metrics before later callbacks (Tune's report) read them. Its state, best weights
    included, goes into Lightning checkpoints, so a resumed run keeps selecting among all
    the steps it has seen.
    """

    def __init__(self, patience: int, min_se: float = 1.0, min_delta: float = 1e-3) -> None:
        self.patience, self.min_se, self.min_delta = patience, min_se, min_delta
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_points: torch.Tensor | None = None
        self.best_score = float("inf")
        self.best_step = 0
        self.best_fit: dict[str, float] = {}
        self.best_reference: DomainReference | None = None  # the domain reference of the best weights
        self.history: list[tuple[int, float]] = []
        self.wait = 0
        self.stopped = False
        self._candidate: dict[str, torch.Tensor] | None = None
        self._candidate_train: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def state_key(self) -> str:
        return "HeldOutSelection"

    # -- scoring -------------------------------------------------------------------------------
    @staticmethod
    def _score(pl_module: pl.LightningModule, x: torch.Tensor, y: torch.Tensor):
        return pl_module.estimate_preprocessed(x, y, pl_module.cfg.val_n_logsnr, seed=0)

    @staticmethod
    def _parts(trainer: pl.Trainer) -> tuple[Any, Any]:
        data = trainer.datamodule
        return getattr(data, "train", None), getattr(data, "val", None)

    def _probe(self, trainer: pl.Trainer) -> tuple[torch.Tensor, torch.Tensor] | None:
        train, val = self._parts(trainer)
        if train is None or val is None:
            return None
        rows = min(len(train.x), len(val.x), PROBE_ROWS)
        return train.x[:rows], train.y[:rows]

    def significantly_better(self, points: torch.Tensor) -> bool:
        """Lower than the selected held-out NLL by over ``min_se`` paired SE and ``min_delta`` nats."""
        if self.best_points is None or self.best_points.shape != points.shape:
            return float(points.mean()) < self.best_score - self.min_delta
        diff = points.double() - self.best_points.double()
        se = float(diff.std()) / math.sqrt(diff.numel()) if diff.numel() > 1 else 0.0
        return float(diff.mean()) < -max(self.min_se * se, self.min_delta)

    @staticmethod
    def _fit_record(val: tuple[float, float], train: tuple[float, float]) -> dict[str, float]:
        record = {
            "train_nll_x": train[0],
            "train_nll_x_given_y": train[1],
            "train_nll": train[0] + train[1],
            "val_nll_x": val[0],
            "val_nll_x_given_y": val[1],
            "val_nll": val[0] + val[1],
        }
        record["nll_gap"] = record["val_nll"] - record["train_nll"]
        return record

    def _copy(self, pl_module: pl.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Score the untrained model too: with the Gaussian base it is a real candidate."""
        if trainer.global_step == 0 and not self.history:
            self._consider_now(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Score the last weights when the step cap fell between two validations."""
        if self.history and self.history[-1][0] < trainer.global_step and not self.stopped:
            self._consider_now(trainer, pl_module)

    def _consider_now(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Score the current weights outside a validation loop, as ``validation_step`` does."""
        _, val = self._parts(trainer)
        probe = self._probe(trainer)
        if val is None or probe is None:
            return
        est = self._score(pl_module, val.x, val.y)
        score = est.nll_x + est.nll_x_given_y
        if not math.isfinite(score):
            return
        self.history.append((trainer.global_step, score))
        if self.best_state is None or self.significantly_better(est.nll_points):
            train = self._score(pl_module, *probe)
            self.best_score, self.best_points, self.best_state = score, est.nll_points, self._copy(pl_module)
            self.best_reference = DomainReference.from_rows(
                est.nll_points, est.mi_points, val.x, val.y, pl_module.cfg.val_n_logsnr
            )
            self.best_step = trainer.global_step
            self.best_fit = self._fit_record((est.nll_x, est.nll_x_given_y), (train.nll_x, train.nll_x_given_y))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The weights being validated (averaged ones under EMA, swapped back after this hook).
        if trainer.sanity_checking:
            return
        self._candidate = self._copy(pl_module)
        probe = self._probe(trainer)
        if probe is not None:
            train = self._score(pl_module, *probe)
            self._candidate_train = (train.nll_x, train.nll_x_given_y)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or MONITOR not in metrics:
            return
        current = float(metrics[MONITOR])
        points = getattr(pl_module, "last_val_points", None)
        self.history.append((trainer.global_step, current))
        fit_now = self._fit_record(
            (float(metrics["val_nll_x"]), float(metrics["val_nll_x_given_y"])), self._candidate_train
        )
        if math.isfinite(current) and (
            self.significantly_better(points) if points is not None else current < self.best_score
        ):
            self.best_state, self.best_step, self.best_fit = self._candidate, trainer.global_step, fit_now
            self.best_score, self.best_points, self.wait = current, points, 0
            self.best_reference = getattr(pl_module, "domain_reference", None)
        else:
            self.wait += 1
        if self.wait >= self.patience or not math.isfinite(current):
            trainer.should_stop = True
            self.stopped = True
        extra = {
            "selected_step": float(self.best_step),
            "best_val_loss": self.best_score,
            "trained_steps": float(trainer.global_step),
            "train_nll": fit_now["train_nll"],
            "nll_gap": fit_now["nll_gap"],
            "early_stopped": float(self.stopped),
        }
        for key, value in extra.items():
            metrics[key] = torch.tensor(value)

    # -- results -------------------------------------------------------------------------------
    def restore_best(self, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)
            pl_module.domain_reference = self.best_reference

    def report(self, trainer: pl.Trainer) -> SelectionReport:
        return SelectionReport(
            selected_step=self.best_step,
            trained_steps=trainer.global_step,
            max_steps=trainer.max_steps,
            stopped_early=self.stopped,
            best_val_loss=self.best_score if math.isfinite(self.best_score) else float("nan"),
            val_history=list(self.history),
            fit_gap=dict(self.best_fit),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_step": self.best_step,
            "wait": self.wait,
            "stopped": self.stopped,
            "history": [list(h) for h in self.history],
            "best_fit": dict(self.best_fit),
            "best_points": self.best_points,
            "best_state": self.best_state,
            "best_reference": None if self.best_reference is None else self.best_reference.as_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = float(state_dict.get("best_score", float("inf")))
        self.best_step = int(state_dict.get("best_step", 0))
        self.wait = int(state_dict.get("wait", 0))
        self.stopped = bool(state_dict.get("stopped", False))
        self.history = [(int(s), float(v)) for s, v in state_dict.get("history", [])]
        self.best_fit = {k: float(v) for k, v in state_dict.get("best_fit", {}).items()}
        self.best_points = state_dict.get("best_points")
        self.best_state = state_dict.get("best_state")
        reference = state_dict.get("best_reference")
        self.best_reference = None if reference is None else DomainReference.from_dict(reference)


def report_from_state(callback_states: dict[str, Any], trained_steps: int) -> SelectionReport | None:
    """The report a Lightning checkpoint's callback state implies."""
    state = callback_states.get("HeldOutSelection")
    if not state:
        return None
    best = float(state.get("best_score", float("nan")))
    return SelectionReport(
        selected_step=int(state.get("best_step", 0)),
        trained_steps=trained_steps,
        max_steps=-1,
        stopped_early=bool(state.get("stopped", False)),
        best_val_loss=best if math.isfinite(best) else float("nan"),
        val_history=[(int(a), float(b)) for a, b in state.get("history", [])],
        fit_gap={k: float(v) for k, v in state.get("best_fit", {}).items()},
    )
