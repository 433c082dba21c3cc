"""bmi's own estimators as peers: KSG, CCA and the neural critics InfoNCE, MINE, NWJ and DV.

Each runs with bmi's defaults except where noted in ``PeerSettings`` (sample caps, step cap,
``verbose=False``). They run in one worker process with a time limit, so a peer that hangs
or takes too long is stopped and recorded as skipped instead of stalling the benchmark.
A peer that raises is recorded as failed with the exception. Neither is hidden.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

PEER_NAMES = ("ksg", "cca", "infonce", "mine", "nwj", "dv")
CRITICS = ("infonce", "mine", "nwj", "dv")


@dataclass(frozen=True)
class PeerSettings:
    """Budget of the peers. KSG costs O(n²) distances and InfoNCE/MINE evaluate an O(n²) score
    matrix on their test half, so their samples are capped; CCA sees the whole sample."""

    ksg_max_n: int = 10_000
    critic_max_n: int = 10_000
    critic_steps: int = 5_000
    seed: int = 0
    ksg_neighborhoods: tuple[int, ...] = (5,)


def sample_size(name: str, n: int, settings: PeerSettings) -> int:
    """How many of the task's ``n`` points the peer sees (the first ones: the draws are i.i.d.)."""
    if name == "ksg":
        return min(n, settings.ksg_max_n)
    if name in CRITICS:
        return min(n, settings.critic_max_n)
    return n


def steps_of(name: str, settings: PeerSettings) -> int | None:
    return settings.critic_steps if name in CRITICS else None


def make_peer(name: str, settings: PeerSettings):
    from bmi.estimators import (
        CCAMutualInformationEstimator,
        DonskerVaradhanEstimator,
        InfoNCEEstimator,
        KSGEnsembleFirstEstimator,
        MINEEstimator,
        NWJEstimator,
    )

    if name == "ksg":
        return KSGEnsembleFirstEstimator(neighborhoods=settings.ksg_neighborhoods, standardize=True)
    if name == "cca":
        return CCAMutualInformationEstimator()
    if name == "infonce":
        return InfoNCEEstimator(max_n_steps=settings.critic_steps, verbose=False, seed=settings.seed)
    if name == "mine":
        return MINEEstimator(max_n_steps=settings.critic_steps, verbose=False, seed=settings.seed)
    if name == "nwj":
        return NWJEstimator(max_n_steps=settings.critic_steps, verbose=False, seed=settings.seed)
    if name == "dv":
        return DonskerVaradhanEstimator(max_n_steps=settings.critic_steps, verbose=False, seed=settings.seed)
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")


def describe(name: str, n_points: int, info: dict[str, Any]) -> str:
    """Facts worth a note: how the neural critics trained and how many points they were scored on."""
    if name not in CRITICS:
        return ""
    n_eval = n_points - int(n_points * 0.5)  # bmi's default train_test_split of 0.5
    parts = [f"scored on {n_eval} held-out points"]
    if name == "infonce":
        parts[0] += f" (log {n_eval} = {math.log(n_eval):.2f})"
    if "n_training_steps" in info:
        parts.append(f"{info['n_training_steps']} steps")
    flags = sorted(k for k, v in info.items() if v is True)
    if flags:
        parts.append("bmi flags: " + ", ".join(flags))
    return "; ".join(parts)


def run_peer(name: str, x: np.ndarray, y: np.ndarray, settings: PeerSettings) -> dict[str, Any]:
    """One peer on one sample: estimate, seconds, status and note; exceptions become 'failed'."""
    start = time.perf_counter()
    try:
        result = make_peer(name, settings).estimate_with_info(x, y)
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a result to record
        return _row("failed", None, time.perf_counter() - start, one_line(exc))
    seconds = time.perf_counter() - start
    info = {k: v for k, v in (result.additional_information or {}).items() if not isinstance(v, (list, dict))}
    value = float(result.mi_estimate)
    note = describe(name, len(x), info)
    if not math.isfinite(value):
        return _row("failed", None, seconds, "; ".join(filter(None, ["non-finite estimate", note])))
    return _row("ok", value, seconds, note)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _row(status: str, estimate: float | None, seconds: float, note: str) -> dict[str, Any]:
    return {"status": status, "estimate": estimate, "seconds": seconds, "note": note}


def _limit_threads(threads: int) -> None:
    """In the worker, before JAX loads: XLA's CPU pool otherwise takes every core."""
    if threads == 1:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["OMP_NUM_THREADS"] = str(threads)


class PeerRunner:
    """Runs peers in one reusable spawned worker with a time limit (``timeout_s`` ≤ 0: in-process)."""

    def __init__(self, timeout_s: float, threads: int = 1) -> None:
        self.timeout_s = timeout_s
        self.threads = threads
        self._pool = None

    def run(self, name: str, x: np.ndarray, y: np.ndarray, settings: PeerSettings) -> dict[str, Any]:
        if self.timeout_s <= 0:
            return run_peer(name, x, y, settings)
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(1, initializer=_limit_threads, initargs=(self.threads,))
        start = time.perf_counter()
        pending = self._pool.apply_async(run_peer, (name, x, y, settings))
        try:
            return pending.get(self.timeout_s)
        except multiprocessing.TimeoutError:
            self.close()
            note = f"stopped after {self.timeout_s:g} s (--peer_timeout)"
            return _row("skipped", None, time.perf_counter() - start, note)
        except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be sent back
            self.close()
            return _row("failed", None, time.perf_counter() - start, one_line(exc))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
