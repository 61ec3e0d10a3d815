"""Solver callbacks, one job each: progress on the terminal, the metrics log, checkpoints, lookahead.

A callback is any function ``callback(event, solver, info)``. The Solver sends:

- ``'start'``       when train() begins (info: epoch, iteration);
- ``'epoch_start'`` before the first step this call makes in an epoch (epoch, batch_in_epoch:
                    not 0 when a resumed run continues a partial epoch);
- ``'iteration'``   after each update (iteration, epoch as a float, loss, learning_rate, images);
- ``'epoch'``       after each epoch's evaluation (epoch, train_acc, val_acc, loss, learning_rate,
                    seconds, images_per_second);
- ``'interrupt'``   when a Ctrl-C or SIGTERM is acted on, between two steps (epoch, iteration,
                    signal: 'SIGINT' or 'SIGTERM');
- ``'checkpoint'``  after a checkpoint file is on disk (path, reason: 'epoch' or 'interrupt');
- ``'end'``         after the last epoch (best_val_acc, best_epoch).
"""

import csv
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from convnet.checkpoint import (best_file, live_model_arrays, remove_stale_temporaries, save_arrays, solver_checkpoint,
                                write_atomically)
from convnet.options import Option

METRIC_FIELDS = ["kind", "epoch", "iteration", "loss", "train_acc", "val_acc", "learning_rate", "seconds",
                 "images_per_second"]


class Progress:
    """A tqdm bar per epoch (when ``bar``; None: when stderr is a terminal), CS231n's
    '(Iteration i / n) loss' lines every ``solver.print_every`` iterations otherwise, and one
    line per epoch; prints nothing unless ``solver.verbose``."""

    def __init__(self, bar=None, file=None):
        self.bar = sys.stderr.isatty() if bar is None else bar
        self.file = file
        self._bar, self._started, self._images = None, None, 0

    def __call__(self, event, solver, info):
        if not solver.verbose:
            return
        if event == "epoch_start" and self.bar:
            self._bar = tqdm(total=solver.epoch_length(solver.epoch), initial=solver.batch_in_epoch, unit="batch",
                             desc=f"epoch {solver.epoch + 1}/{solver.epoch_count}", leave=False, file=sys.stderr)
            self._started, self._images, self._loss = time.perf_counter(), 0, None
        elif event == "iteration":
            self._step(solver, info)
        elif event == "epoch":
            self._close()
            val = "-" if info["val_acc"] is None else f"{info['val_acc']:.4f}"
            self._say(f"(Epoch {info['epoch']} / {solver.epoch_count}) train acc: {info['train_acc']:.4f}; "
                      f"val acc: {val}; lr {info['learning_rate']:.2e}; {info['images_per_second']:.0f} images/s")
        elif event == "interrupt":
            self._close()
            by = f" by {info['signal']}" if info.get("signal") not in (None, "SIGINT") else ""
            self._say(f"Interrupted{by} at epoch {info['epoch']:.2f} (iteration {info['iteration']}), "
                      "between two steps.")

    def _step(self, solver, info):
        if self._bar is not None:
            self._images += info["images"]
            self._loss = info["loss"] if self._loss is None else 0.9 * self._loss + 0.1 * info["loss"]
            rate = self._images / max(time.perf_counter() - self._started, 1e-9)
            self._bar.set_postfix(loss=f"{self._loss:.3f}", lr=f"{info['learning_rate']:.2e}", img_s=f"{rate:.0f}",
                                  refresh=False)
            self._bar.update(1)
        elif solver.print_every and info["iteration"] % solver.print_every == 0:
            total = solver.total_iterations
            self._say(f"(Iteration {info['iteration']} / {total}) loss: {info['loss']:f}")

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _say(self, message):
        tqdm.write(message, file=self.file or sys.stdout)


class MetricsLog:
    """Appends rows to metrics.csv: a 'step' row every ``every`` iterations and an 'epoch' row
    per epoch, each flushed at once so a crash keeps them.

    When training starts the file is rewritten with only the rows the solver's position has
    reached, so a resumed run drops what was logged after its checkpoint; a row cut off by a
    killed write, or otherwise unreadable, is dropped too.
    """

    def __init__(self, path, every):
        self.path, self.every = Path(path), every

    def __call__(self, event, solver, info):
        if event == "start":
            self._keep_rows_up_to(solver.epoch, solver.iteration)
            return
        if event == "iteration" and self.every and info["iteration"] % self.every == 0:
            row = {"kind": "step", "epoch": f"{info['epoch']:.4f}", "iteration": info["iteration"],
                   "loss": f"{info['loss']:.6f}", "learning_rate": f"{info['learning_rate']:.6g}"}
        elif event == "epoch":
            row = {"kind": "epoch", "epoch": info["epoch"], "iteration": solver.iteration,
                   "loss": f"{info['loss']:.6f}", "train_acc": f"{info['train_acc']:.4f}",
                   "val_acc": "" if info["val_acc"] is None else f"{info['val_acc']:.4f}",
                   "learning_rate": f"{info['learning_rate']:.6g}", "seconds": f"{info['seconds']:.2f}",
                   "images_per_second": f"{info['images_per_second']:.1f}"}
        else:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_FIELDS).writerow(row)

    def _keep_rows_up_to(self, epoch, iteration):
        rows = []
        if self.path.is_file():
            rows = [row for row in read_metrics(self.path)
                    if (int(row["epoch"]) <= epoch if row["kind"] == "epoch" else int(row["iteration"]) <= iteration)]

        def write(temporary):
            with open(temporary, "w", newline="") as f:
                writer = csv.DictWriter(f, METRIC_FIELDS)
                writer.writeheader()
                writer.writerows(rows)

        write_atomically(self.path, write)  # a kill now must not lose the rows logged so far


def read_metrics(path):
    """The complete, readable rows of a metrics.csv (a last line without its newline is dropped)."""
    text = Path(path).read_text(errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # cut off by a killed write
    rows = []
    for row in csv.DictReader(lines):
        try:
            if row.get("kind") not in ("step", "epoch") or None in row.values() or None in row:
                continue
            int(row["iteration"]), float(row["epoch"])
            if row["kind"] == "epoch":
                int(row["epoch"])
        except (TypeError, ValueError):
            continue
        rows.append(row)
    return rows


class Checkpoint:
    """Checkpointing as a callback: at each epoch end and on an interrupt, writes

    - ``directory/best.npz`` (the best state: parameters and batch-norm statistics, and the
      solver's inference record), when it
      changed, *before* ``directory/checkpoint.npz``, which holds everything to continue,
      the best state included. A resume restores the best state from checkpoint.npz and
      rewrites best.npz from it, so the two always end up naming the same best epoch.
    - ``{name}_epoch_{e}.npz`` after each epoch (CS231n's ``checkpoint_name``).

    Then sends the ``'checkpoint'`` event. Stale temporaries from killed writes in
    ``directory`` are removed when training starts.
    """

    def __init__(self, directory=None, name=None):
        self.directory = Path(directory) if directory is not None else None
        self.name = name
        self._best_written = None  # best epoch that best.npz holds, as written by this callback
        self._written_at = None  # (epoch, iteration) of the last checkpoint.npz written

    def __call__(self, event, solver, info):
        if event == "start":
            if self.directory is not None and self.directory.is_dir():
                remove_stale_temporaries(self.directory)
        elif event in ("epoch", "interrupt"):
            self.save(solver, reason=event)

    def save(self, solver, reason="epoch"):
        """Write the files for the solver's current state; returns the main path (or None).

        ``reason``: 'epoch' at the end of a completed epoch (then the ``{name}_epoch_{e}.npz`` file
        is written too), 'interrupt' on a Ctrl-C or SIGTERM.
        """
        arrays, meta = solver_checkpoint(solver)
        path = None
        if self.directory is not None:
            if solver.best_state is not None and self._best_written != solver.best_epoch:
                save_arrays(self.directory / "best.npz", *best_file(solver))
                self._best_written = solver.best_epoch
            if self._written_at != (solver.epoch, solver.iteration):
                path = self.directory / "checkpoint.npz"
                save_arrays(path, arrays, meta)
                self._written_at = (solver.epoch, solver.iteration)
        if self.name is not None and reason == "epoch":  # 'epoch': a completed epoch's end
            epoch_path = Path(f"{self.name}_epoch_{solver.epoch}.npz")
            save_arrays(epoch_path, arrays, meta)
            path = path or epoch_path
        if path is not None:
            solver.notify("checkpoint", {"path": path, "reason": reason, "epoch": solver.progress_epochs,
                                         "iteration": solver.iteration})
        return path



#: The keys of solver.lookahead (Lookahead's arguments).
LOOKAHEAD = {
    "every": Option(5, int, range="[1, inf)", help="steps between two updates of the average"),
    "decay": Option(0.95, float, range="[0, 1]", help="per-step decay: an update keeps decay ** every "
                                                      "(times the ramp) of the average"),
    "power": Option(3.0, float, range="[0, inf)", help="the ramp (step / total_steps) ** power of the decay: "
                                                       "little averaging early, more late"),
}


class Lookahead:
    """Lookahead / EMA of the weights and batch-norm running statistics, as a callback.

    Every ``every`` steps: d = decay ** every * (step / total_steps) ** power,
    average += (1 - d) * (state - average), then the model's state := average; after the last step
    the state := average. The average starts as a copy of the state when a fresh run starts (a
    batch-norm statistic first computed later joins at its first update). ``average``
    ({'param/<name>' | 'bn/<i>/<stat>': array}) is in every checkpoint (convnet.checkpoint FIELDS).
    """

    def __init__(self, every=5, decay=0.95, power=3.0):
        self.every, self.decay, self.power = every, decay, power
        self.average = None

    def __call__(self, event, solver, info):
        if event == "start" and self.average is None:
            self.average = {key: value.copy() for key, value in live_model_arrays(solver.model).items()}
        elif event == "iteration":
            step, total = solver.iteration, solver.total_iterations
            if step % self.every == 0:
                self.update(solver.model, self.decay ** self.every * (step / total) ** self.power)
            if step >= total:
                self.update(solver.model, 1.0)

    def sync(self, communicator):
        """The average's batch-norm statistics ('bn/...', which differ per rank as the model's do)
        -> their mean over the ranks (``communicator``: convnet.distributed's); parameters are
        the same on every rank already."""
        for key, value in (self.average or {}).items():
            if key.startswith("bn/"):
                self.average[key] = communicator.mean(value)

    def update(self, model, decay):
        """average += (1 - decay) * (state - average); then the model's state := average (in place)."""
        for key, live in live_model_arrays(model).items():
            average = self.average.get(key)
            if average is None:  # e.g. a running mean created by the first forward pass
                self.average[key] = live.copy()
                continue
            if decay != 1.0:
                average += (1.0 - decay) * (live - average)
            live[...] = average
