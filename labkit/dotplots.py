"""Dot-and-whisker charts: each score a point with its error bar.

A bar's length reads as the score itself, so a bar on an axis that does not start at 0 exaggerates
every difference; a point reads as a position, and the axis can be zoomed to where the scores are.
"""

from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from labkit.compare import standard_error
from labkit.viz import display_name, model_label, zoomed_limits

OFFSET = 0.18  # how far apart the points of different models (or settings) at one position sit


def plot_per_breed(per_image: dict[str, list[dict]], key: str = "dice") -> Figure:
    """Mean score per breed, a point per model with its standard error over the breed's photos,
    easiest breeds on top.

    Args:
        per_image: model key -> per-image rows with keys breed, species and `key`.
    """
    scores = {model: defaultdict(list) for model in per_image}
    for model, rows in per_image.items():
        for row in rows:
            scores[model][row["breed"]].append(row[key])
    species = {row["breed"]: row["species"] for rows in per_image.values() for row in rows}
    breeds = sorted(species, key=lambda breed: np.mean([np.mean(s[breed]) for s in scores.values() if breed in s]))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 1.2 + 0.3 * len(breeds))), layout="constrained")
    lows, highs = [], []
    for index, (model, by_breed) in enumerate(scores.items()):
        shown = [breed for breed in breeds if breed in by_breed]
        positions = np.array([breeds.index(breed) for breed in shown]) - (index - (len(scores) - 1) / 2) * OFFSET
        means = np.array([np.mean(by_breed[breed]) for breed in shown])
        errors = np.array([standard_error(by_breed[breed]) for breed in shown])
        lows.append((means - errors).min())
        highs.append((means + errors).max())
        everything = [row[key] for row in per_image[model]]
        ax.errorbar(means, positions, xerr=errors, fmt="o", color=f"C{index}", capsize=3,
                    label=f"{model_label(model)} (all photos {np.mean(everything):.3f} ± {standard_error(everything):.3f})")
    ax.set_yticks(np.arange(len(breeds)), [f"{breed} ({species[breed]})" for breed in breeds], fontsize=8)
    ax.set(xlim=zoomed_limits(min(lows), max(highs)), ylim=(-0.6, len(breeds) - 0.4),
           xlabel=f"{display_name(key)}, mean per breed (± standard error over its photos)",
           title="Which breeds are hardest? (easiest on top)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=len(scores), frameon=False, fontsize=9)
    return fig


def plot_score_summary(means: dict[str, dict[str, float]], errors: dict[str, dict[str, float]],
                       ylabel: str = "Dice (± SE)", title: str = "Scores") -> Figure:
    """One group per model, one point per setting with its error bar and its value beside it.

    Args:
        means: model key -> {setting label: score}.
        errors: the same keys -> the score's standard error.
    """
    models = list(means)
    settings = list(means[models[0]])
    low = min(means[m][s] - errors[m][s] for m in models for s in settings)
    high = max(means[m][s] + errors[m][s] for m in models for s in settings)
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for index, setting in enumerate(settings):
        positions = np.arange(len(models)) + (index - (len(settings) - 1) / 2) * OFFSET * 2
        values = [means[model][setting] for model in models]
        spreads = [errors[model][setting] for model in models]
        ax.errorbar(positions, values, yerr=spreads, fmt="o", capsize=4, color=f"C{index}", label=setting)
        for position, value in zip(positions, values):
            ax.annotate(f"{value:.3f}", (position, value), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize=8)
    ax.set_xticks(np.arange(len(models)), [model_label(model) for model in models])
    ax.set(xlim=(-0.6, len(models) - 0.4), ylim=zoomed_limits(low, high, margin=0.2), ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(4, len(settings)), frameon=False, fontsize=9)
    return fig
