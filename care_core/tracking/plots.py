"""Learning-curve plots (matplotlib, Agg backend): reward / accuracy / KL / response length per round."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# curve title -> metric name (the vocabulary of docs/interfaces.md §5)
CURVES: dict[str, str] = {
    "reward": "reward/mean",
    "accuracy": "accuracy/mean",
    "KL": "actor/kl",
    "response length": "response_length/mean",
}

History = Mapping[str, Sequence[tuple[int, float]]]  # metric name -> [(step, value)]


def select_curve_metrics(names: Iterable[str]) -> dict[str, str]:
    """Map each curve title to the metric that holds it: the name itself, else the shortest name
    ending in ``/<name>`` (a history whose keys carry an extra prefix, as bench/efficacy.py writes)."""
    names = sorted(set(names))
    chosen: dict[str, str] = {}
    for title, metric in CURVES.items():
        hits = [n for n in names if n == metric or n.endswith("/" + metric)]
        if hits:
            chosen[title] = min(hits, key=len)
    return chosen


def plot_learning_curves(
    runs: Mapping[str, History], out_path: str | Path, title: str = "Learning curves"
) -> Path | None:
    """One panel per curve, one line per run label; returns the PNG path or None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_names = {name for history in runs.values() for name in history}
    curves = select_curve_metrics(all_names)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (curve, metric) in zip(axes[0], curves.items(), strict=True):
        for label, history in runs.items():
            points = sorted(history.get(metric, ()))
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=label)
        ax.set_title(f"{curve}\n({metric})", fontsize=9)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def run_history(client: object, run_id: str, names: Iterable[str]) -> dict[str, list[tuple[int, float]]]:
    """Metric histories of one MLflow run: name -> sorted [(step, value)]."""
    out: dict[str, list[tuple[int, float]]] = {}
    for name in names:
        history = client.get_metric_history(run_id, name)  # type: ignore[attr-defined]
        out[name] = sorted((int(m.step), float(m.value)) for m in history)
    return out
