"""A registered champion on data from its own task and on data from elsewhere: estimate and domain check.

After ``make sweep`` (or any sweep of a benchmark task), this loads ``models:/<name>@champion`` as a
colleague would and predicts on three samples, each of ``--rows`` rows:

- a fresh sample of the sweep's own task (rows the sweep never saw);
- independent standard Gaussians with the same columns (true MI 0);
- the fresh sample with y shuffled against x (its marginals, no dependence; true MI 0).

For each it prints the direct estimate with its SE, ``in_domain`` and ``domain_score``. It also says
whether ``params={"strict": True}`` refused the sample. It adds the sweep's final estimate (from its
summary) for comparison.

    python benchmarks/domain_check.py --storage ray_results --name quick [--rows 4000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def samples(config: dict, rows: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from dmi.tasks import TaskSpec, sample_task

    (task,) = config["data"]["tasks"]  # a sweep of one benchmark task
    spec = TaskSpec(task["task_type"], int(task["dim"]), float(task["strength"]))
    x, y = (np.array(a) for a in sample_task(spec, rows, seed=seed))
    rng = np.random.default_rng(seed + 1)
    return {
        "fresh sample of the task": (x, y),
        "independent N(0, 1) columns": (rng.normal(size=x.shape), rng.normal(size=y.shape)),
        "the fresh sample, y shuffled": (x, y[rng.permutation(len(y))]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", type=Path, default=Path("ray_results"))
    parser.add_argument("--name", default="quick")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import mlflow

    summary = json.loads((args.storage / args.name / "dmi_summary.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{(args.storage / 'mlflow.db').resolve()}")
    model_name = f"dmi-{summary['data']['label']}"
    model = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    columns = [c["name"] for c in model.metadata.get_input_schema().to_dict()]
    final = summary["final_estimate"]
    lines = [
        f"champion models:/{model_name}@champion of sweep {args.name}; true MI {summary['true_mi']:.4f} nats",
        f"the sweep's final estimate (its test rows): {final['mi']:.4f} ± {final['mi_stderr']:.4f}; "
        f"domain_score there {summary['final_domain']['domain_score']:.3f}",
        "",
        "| sample (rows) | true MI | direct estimate | in_domain | domain_score | strict |",
        "|---|---|---|---|---|---|",
    ]
    for label, (x, y) in samples(summary["config"], args.rows, args.seed).items():
        frame = pd.DataFrame(np.hstack([x, y]), columns=columns)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            row = model.predict(frame).iloc[0]
        try:
            model.predict(frame, params={"strict": True})
            strict = "estimated"
        except ValueError:
            strict = "refused"
        truth = f"{summary['true_mi']:.3f}" if label.startswith("fresh") else "0"
        warned = " (warned)" if any("unlike the estimator's training data" in str(w.message) for w in caught) else ""
        lines.append(
            f"| {label} ({args.rows}) | {truth} | {row['mi']:.4f} ± {row['mi_stderr']:.4f} | "
            f"{row['in_domain']}{warned} | {row['domain_score']:.3f} | {strict} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
