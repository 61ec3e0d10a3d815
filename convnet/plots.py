"""PNG plots of a training run: loss, accuracy, first-layer filters, confusion matrix.

Figures are drawn with matplotlib's object API on the Agg canvas, so nothing here needs a
display or touches pyplot's global state.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig, path):
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_loss(loss_history, iterations_per_epoch, path):
    """Training loss per iteration (faint) and its moving average over ~1/10 epoch, against epochs."""
    loss = np.asarray(loss_history, dtype=np.float64)
    epochs = np.arange(1, len(loss) + 1) / iterations_per_epoch
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot(epochs, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="per iteration")
    window = max(1, min(len(loss), iterations_per_epoch // 10))
    if len(loss) >= window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(epochs[window - 1 :], smooth, color="tab:blue", label=f"mean of {window}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.legend()
    _save(fig, path)


def plot_accuracy(train_acc, val_acc, path):
    """Train and validation accuracy after each epoch."""
    epochs = np.arange(1, len(train_acc) + 1)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot(epochs, train_acc, "o-", label="train")
    if any(v is not None for v in val_acc):
        ax.plot(epochs, [np.nan if v is None else v for v in val_acc], "o-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def filter_grid(W, padding=1):
    """First-layer filters W (F, C, k, k) as one image: each filter scaled to [0, 1], tiled in a grid.

    Three input channels are shown in colour, otherwise the first channel in grey.
    Returns (rows * (k + padding), cols * (k + padding), 3).
    """
    F, C, kh, kw = W.shape
    filters = W[:, :3] if C >= 3 else np.repeat(W[:, :1], 3, axis=1)
    low = filters.min(axis=(1, 2, 3), keepdims=True)
    high = filters.max(axis=(1, 2, 3), keepdims=True)
    filters = (filters - low) / np.maximum(high - low, 1e-12)
    cols = int(np.ceil(np.sqrt(F)))
    rows = int(np.ceil(F / cols))
    grid = np.ones((rows * (kh + padding), cols * (kw + padding), 3))
    for index in range(F):
        r, c = divmod(index, cols)
        grid[r * (kh + padding) : r * (kh + padding) + kh, c * (kw + padding) : c * (kw + padding) + kw] = \
            filters[index].transpose(1, 2, 0)
    return grid


def plot_filters(W, path):
    """The first convolution's filters (F, C, k, k) as a grid of small images."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.imshow(filter_grid(np.asarray(W, dtype=np.float64)), interpolation="nearest")
    ax.set_title(f"first-layer filters ({W.shape[0]} x {W.shape[2]}x{W.shape[3]})")
    ax.axis("off")
    _save(fig, path)


def plot_confusion(matrix, class_names, path):
    """Confusion matrix (rows: true class, columns: predicted), each row as fractions of that class."""
    matrix = np.asarray(matrix, dtype=np.float64)
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{fractions[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _save(fig, path)
