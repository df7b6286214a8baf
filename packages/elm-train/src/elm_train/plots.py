"""PNG plot of the dynamic dimension for the run report (loss curves and score-against-size
plots are elm-eval's).

matplotlib's Agg backend is selected explicitly so that plotting works on machines without a
display (CI, servers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def width_growth(history: Sequence[Sequence[Sequence[int]]], kinds: Sequence[str], path: Path) -> Path:
    """Left: mean FFN width of each layer's candidates per epoch. Right: final width per candidate.

    ``history[e][l][c]`` is the width of candidate ``c`` of layer ``l`` after epoch ``e`` (entry 0
    is the initial space).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = range(len(history))
    for layer in range(len(history[0])):
        left.plot(
            epochs, [sum(h[layer]) / len(h[layer]) for h in history], marker="o", label=f"layer {layer}"
        )
    left.set_xlabel("epoch (0 = initial)")
    left.set_ylabel("mean FFN width")
    left.set_title("dynamic dimension: growth per layer")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    final = history[-1]
    image = right.imshow(final, aspect="auto", cmap="viridis")
    right.set_xticks(range(len(kinds)), [f"{c}:{k[0].upper()}" for c, k in enumerate(kinds)], fontsize=7)
    right.set_yticks(range(len(final)))
    right.set_xlabel("candidate (B = BERT, M = MobileBERT)")
    right.set_ylabel("layer")
    right.set_title("final FFN width")
    for layer, row in enumerate(final):
        for cand, width in enumerate(row):
            right.text(cand, layer, str(width), ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
