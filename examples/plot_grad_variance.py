"""Plot grad/variance and grad/snr of one or more training runs from their TensorBoard logs.

Reads the event files with TensorBoard's EventAccumulator and writes a PNG.

Examples:
    python examples/plot_grad_variance.py runs/expectation-seed0 runs/grpo-seed0
    python examples/plot_grad_variance.py runs/* --output docs/grad_variance.png --smooth 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DEFAULT_TAGS = ("grad/variance", "grad/snr")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "runs", nargs="+", help="run directories that contain TensorBoard event files"
    )
    parser.add_argument(
        "--tags", nargs="+", default=list(DEFAULT_TAGS), help="scalar tags to plot, one panel each"
    )
    parser.add_argument("--output", default="docs/grad_variance.png", help="PNG file to write")
    parser.add_argument(
        "--smooth", type=int, default=1, help="moving-average window in steps (1: raw values)"
    )
    parser.add_argument(
        "--linear", action="store_true", help="linear y axes (default: logarithmic)"
    )
    return parser.parse_args(argv)


def read_scalars(run_dir: str | Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(steps, values)`` of one scalar tag; empty arrays when the run lacks it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return np.zeros(0), np.zeros(0)
    points = events.Scalars(tag)
    return np.array([p.step for p in points]), np.array([p.value for p in points])


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Return the trailing moving average (shorter windows at the start), same length as input."""
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smooth < 1:
        sys.exit(f"error: expected --smooth >= 1, got {args.smooth}")
    missing = [run for run in args.runs if not Path(run).is_dir()]
    if missing:
        sys.exit(f"error: run directory not found: {', '.join(missing)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(args.tags), 1, figsize=(8, 3.2 * len(args.tags)), sharex=True, squeeze=False
    )
    plotted = 0
    for axis, tag in zip(axes[:, 0], args.tags, strict=True):
        for run in args.runs:
            steps, values = read_scalars(run, tag)
            if steps.size == 0:
                print(f"warning: {run} has no scalar {tag!r}; skipped", file=sys.stderr)
                continue
            axis.plot(steps, moving_average(values, args.smooth), label=Path(run).name)
            plotted += 1
        axis.set_ylabel(tag)
        if not args.linear:
            axis.set_yscale("log")
        axis.grid(True, alpha=0.3)
        if axis.get_lines():
            axis.legend(fontsize="small")
    if plotted == 0:
        sys.exit(f"error: none of {args.runs} has any of the tags {args.tags}")
    axes[-1, 0].set_xlabel("training step")
    title = "gradient variance across micro-batches"
    if args.smooth > 1:
        title += f" (moving average over {args.smooth} steps)"
    figure.suptitle(title)
    figure.tight_layout()

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
