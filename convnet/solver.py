"""Solver: trains a model with minibatch gradient descent (CS231n-compatible constructor).

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    batch_size=50, num_epochs=1, seed=0)
    solver.train()

``data`` holds X_train, y_train, X_val, y_val. Training runs true epochs: every epoch
visits each training image once, in an order drawn without replacement, the last
partial batch included. A seed makes a run reproducible (same seed, same loss history).
After each epoch the Solver measures accuracy, keeps the best model state (parameters
and batch-norm statistics, by validation accuracy), and, given a ``checkpoint_dir``,
writes ``checkpoint.npz`` and ``best.npz`` there atomically. A checkpoint holds
everything needed to continue as if never stopped: parameters, optimizer state, batch
norm statistics, random generator states and the position inside the epoch.
A NaN or infinite loss stops training with :class:`TrainingDiverged` before any
checkpoint is written, so the last good one stays intact; Ctrl-C saves a checkpoint
at the current position and returns (``solver.interrupted`` is then True).
"""

import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from convnet import optim
from convnet.checkpoint import load_arrays_and_meta, save_arrays
from convnet.schedules import make_schedule

CHECKPOINT_FORMAT = 1


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Solver:
    """Trains ``model`` on ``data``; see the module docstring.

    CS231n arguments: update_rule (name in optim.UPDATE_RULES, or a function), optim_config,
    lr_decay (per-epoch multiplier, used when no schedule is given), batch_size, num_epochs,
    num_train_samples (training images sampled for the per-epoch train accuracy; None = all),
    num_val_samples (None = the whole validation split), checkpoint_name (also write
    '{checkpoint_name}_epoch_{e}.npz' after each epoch), print_every, verbose.
    Extensions: schedule (see convnet.schedules.make_schedule), seed, augment (a function
    (X_batch, rng) -> X_batch applied to each training batch), callbacks (functions
    (event, solver, info) called on 'iteration', 'epoch' and 'end'), checkpoint_dir,
    progress (tqdm bar; default: when verbose and stderr is a terminal), eval_batch_size.
    """

    def __init__(self, model, data, update_rule="sgd", optim_config=None, lr_decay=1.0, batch_size=100,
                 num_epochs=10, num_train_samples=1000, num_val_samples=None, checkpoint_name=None,
                 print_every=10, verbose=True, schedule=None, seed=None, augment=None, callbacks=(),
                 checkpoint_dir=None, progress=None, eval_batch_size=256):
        self.model = model
        self.X_train, self.y_train = data["X_train"], np.asarray(data["y_train"])
        self.X_val, self.y_val = data.get("X_val"), data.get("y_val")
        if len(self.X_train) != len(self.y_train) or len(self.X_train) == 0:
            raise ValueError(f"X_train and y_train must hold the same, non-zero number of samples, "
                             f"got {len(self.X_train)} and {len(self.y_train)}")
        if isinstance(update_rule, str):
            if update_rule not in optim.UPDATE_RULES:
                raise ValueError(f"update_rule must be one of {sorted(optim.UPDATE_RULES)}, got {update_rule!r}")
            self.update_rule_name, self.update_rule = update_rule, optim.UPDATE_RULES[update_rule]
        else:
            self.update_rule_name, self.update_rule = getattr(update_rule, "__name__", "custom"), update_rule
        self.optim_config = dict(optim_config or {})
        self.base_lr = self.optim_config.get(
            "learning_rate", optim.DEFAULT_LEARNING_RATES.get(self.update_rule_name, 1e-2))
        if schedule is None and lr_decay != 1.0:
            schedule = {"type": "exponential", "decay": lr_decay}
        self.schedule = make_schedule(schedule, self.base_lr, num_epochs)
        self.batch_size = int(batch_size)
        self.num_epochs = int(num_epochs)
        self.num_train_samples = num_train_samples
        self.num_val_samples = num_val_samples
        self.checkpoint_name = checkpoint_name
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.print_every = print_every
        self.verbose = verbose
        self.progress = (verbose and sys.stderr.isatty()) if progress is None else progress
        self.augment = augment
        self.callbacks = list(callbacks)
        self.eval_batch_size = int(eval_batch_size)
        self.rng = np.random.default_rng(seed)
        self.iterations_per_epoch = math.ceil(len(self.X_train) / self.batch_size)
        self._reset()

    def _reset(self):
        """Fresh training state: position, histories, optimizer state, best model."""
        self.epoch = 0  # completed epochs
        self.iteration = 0  # updates made so far
        self.batch_in_epoch = 0
        self.epoch_order = None  # permutation of the training set for the current epoch
        self.loss_history = []
        self.lr_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.epoch_seconds = []  # training time (evaluation excluded) of each epoch
        self.train_seconds = 0.0
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.best_state = None
        self.interrupted = False
        self.optim_configs = {}
        for name, value in self.model.params.items():
            config = dict(self.optim_config)
            if value.ndim < 2:  # biases and normalisation scales are not weight-decayed
                config["weight_decay"] = 0.0
            self.optim_configs[name] = config

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------

    @property
    def best_params(self):
        """CS231n's name for the best state: parameters ('param/<name>') and batch-norm
        running statistics ('bn/<layer>/<stat>') of the best epoch; restore it with
        ``model.load_state(solver.best_params)`` (train() does so after the last epoch)."""
        return self.best_state

    @property
    def progress_epochs(self):
        """Training progress in epochs, e.g. 2.5 halfway through the third epoch."""
        return self.epoch + self.batch_in_epoch / self.iterations_per_epoch

    def step(self):
        """One update on the next minibatch of the current epoch; returns (images, loss, lr)."""
        if self.epoch_order is None:
            self.epoch_order = self.rng.permutation(len(self.X_train))
            self.batch_in_epoch = 0
        start = self.batch_in_epoch * self.batch_size
        indices = self.epoch_order[start : start + self.batch_size]
        X_batch, y_batch = self.X_train[indices], self.y_train[indices]
        if self.augment is not None:
            X_batch = self.augment(X_batch, self.rng)
        loss, grads = self.model.loss(X_batch, y_batch)
        if not np.isfinite(loss):
            last = f"; the last good checkpoint in {self.checkpoint_dir} is intact" if self.checkpoint_dir else ""
            raise TrainingDiverged(
                f"loss became {loss} at epoch {self.progress_epochs:.2f} (iteration {self.iteration + 1}, "
                f"learning rate {self.lr_history[-1] if self.lr_history else self.base_lr:g}){last}. "
                "Lower the learning rate or add normalisation.")
        lr = self.schedule(self.progress_epochs)
        for name, w in self.model.params.items():
            config = self.optim_configs[name]
            config["learning_rate"] = lr
            self.model.params[name], self.optim_configs[name] = self.update_rule(w, grads[name], config)
        self.loss_history.append(float(loss))
        self.lr_history.append(lr)
        self.batch_in_epoch += 1
        self.iteration += 1
        return len(indices), float(loss), lr

    def train(self, epochs=None):
        """Train until num_epochs are done (or for at most ``epochs`` more epochs this call).

        At the end of the last epoch the model is given the best state seen (CS231n).
        Returns self.
        """
        stop_at = self.num_epochs if epochs is None else min(self.num_epochs, self.epoch + epochs)
        self.interrupted = False
        try:
            while self.epoch < stop_at:
                self._train_epoch()
        except KeyboardInterrupt:
            self.interrupted = True
            saved = self.save_checkpoint()
            where = f" to {saved}" if saved else ""
            self._say(f"Interrupted at epoch {self.progress_epochs:.2f}; checkpoint saved{where}.")
            return self
        if self.epoch >= self.num_epochs and self.best_state is not None:
            self.model.load_state(self.best_state)
        self._notify("end", {"best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch})
        return self

    def _train_epoch(self):
        bar = tqdm(total=self.iterations_per_epoch, initial=self.batch_in_epoch, disable=not self.progress,
                   desc=f"epoch {self.epoch + 1}/{self.num_epochs}", unit="batch", leave=False, file=sys.stderr)
        images, started, running_loss = 0, time.perf_counter(), None
        with bar:
            while self.batch_in_epoch < self.iterations_per_epoch:
                count, loss, lr = self.step()
                images += count
                running_loss = loss if running_loss is None else 0.9 * running_loss + 0.1 * loss
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{running_loss:.3f}", lr=f"{lr:.2e}", img_s=f"{images / elapsed:.0f}", refresh=False)
                bar.update(1)
                if not self.progress and self.verbose and self.print_every and self.iteration % self.print_every == 0:
                    total = self.num_epochs * self.iterations_per_epoch
                    print(f"(Iteration {self.iteration} / {total}) loss: {loss:f}")
                self._notify("iteration", {"iteration": self.iteration, "epoch": self.progress_epochs,
                                           "loss": loss, "learning_rate": lr})
        seconds = time.perf_counter() - started
        self.epoch_seconds.append(seconds)
        self.train_seconds += seconds
        self.epoch += 1
        self.epoch_order, self.batch_in_epoch = None, 0
        self._end_of_epoch(images / seconds if seconds > 0 else float("nan"))

    def _end_of_epoch(self, images_per_second):
        train_acc = self.check_accuracy(self.X_train, self.y_train, self.num_train_samples)
        val_acc = None
        if self.X_val is not None and len(self.X_val):
            val_acc = self.check_accuracy(self.X_val, self.y_val, self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        score = val_acc if val_acc is not None else train_acc
        if score > self.best_val_acc:
            self.best_val_acc, self.best_epoch = score, self.epoch
            self.best_state = self.model.state()
        self._say(f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:.4f}; "
                  f"val acc: {'-' if val_acc is None else f'{val_acc:.4f}'}; "
                  f"lr {self.lr_history[-1]:.2e}; {images_per_second:.0f} images/s")
        self._notify("epoch", {"epoch": self.epoch, "train_acc": train_acc, "val_acc": val_acc,
                               "loss": float(np.mean(self.loss_history[-self.iterations_per_epoch:])),
                               "learning_rate": self.lr_history[-1], "seconds": self.epoch_seconds[-1],
                               "images_per_second": images_per_second})
        self.save_checkpoint()

    def check_accuracy(self, X, y, num_samples=None, batch_size=None):
        """Fraction of correctly classified samples, computed in batches in test mode.

        num_samples: evaluate a random subset of this size (drawn from the solver's generator);
        None evaluates the whole split.
        """
        y = np.asarray(y)
        if num_samples is not None and len(X) > num_samples:
            subset = self.rng.choice(len(X), num_samples, replace=False)
            X, y = X[subset], y[subset]
        predictions = self.model.predict(X, batch_size or self.eval_batch_size)
        return float(np.mean(predictions == y))

    # ------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------

    def checkpoint(self):
        """(arrays, meta): everything needed to continue training exactly."""
        arrays = self.model.state()
        scalars = {}
        for name, config in self.optim_configs.items():
            scalars[name] = {}
            for key, value in config.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optim/{name}/{key}"] = value
                else:
                    scalars[name][key] = value
        if self.epoch_order is not None:
            arrays["solver/epoch_order"] = self.epoch_order
        meta = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch, "iteration": self.iteration, "batch_in_epoch": self.batch_in_epoch,
            "num_train": len(self.X_train), "batch_size": self.batch_size, "num_epochs": self.num_epochs,
            "update_rule": self.update_rule_name, "optim_scalars": scalars,
            "solver_rng": self.rng.bit_generator.state, "model_rng": self.model.rng.bit_generator.state,
            "loss_history": self.loss_history, "lr_history": self.lr_history,
            "train_acc_history": self.train_acc_history, "val_acc_history": self.val_acc_history,
            "epoch_seconds": self.epoch_seconds, "train_seconds": self.train_seconds,
            "best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch,
        }
        return arrays, meta

    def save_checkpoint(self):
        """Write checkpoint.npz (and best.npz) into checkpoint_dir; return the path or None."""
        if self.checkpoint_dir is None and self.checkpoint_name is None:
            return None
        arrays, meta = self.checkpoint()
        if self.checkpoint_name is not None and self.batch_in_epoch == 0:
            save_arrays(f"{self.checkpoint_name}_epoch_{self.epoch}.npz", arrays, meta)
        if self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / "checkpoint.npz"
        save_arrays(path, arrays, meta)
        if self.best_state is not None:
            save_arrays(self.checkpoint_dir / "best.npz", self.best_state,
                        {"epoch": self.best_epoch, "val_acc": self.best_val_acc})
        return path

    def load_checkpoint(self, path):
        """Restore a checkpoint written by :meth:`save_checkpoint` (same model and data)."""
        arrays, meta = load_arrays_and_meta(path)
        if not meta or meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a convnet training checkpoint (format {CHECKPOINT_FORMAT})")
        if meta["num_train"] != len(self.X_train) or meta["batch_size"] != self.batch_size:
            raise ValueError(
                f"{path} was written for {meta['num_train']} training images in batches of {meta['batch_size']}, "
                f"but this solver has {len(self.X_train)} in batches of {self.batch_size}")
        self._reset()
        self.model.load_state({k: v for k, v in arrays.items() if k.startswith(("param/", "bn/"))})
        for name, scalars in meta["optim_scalars"].items():
            self.optim_configs[name] = dict(scalars)
        for key, value in arrays.items():
            if key.startswith("optim/"):
                _, name, field = key.split("/", 2)
                self.optim_configs[name][field] = value
        self.epoch_order = arrays.get("solver/epoch_order")
        for field in ("epoch", "iteration", "batch_in_epoch", "loss_history", "lr_history", "train_acc_history",
                      "val_acc_history", "epoch_seconds", "train_seconds", "best_val_acc", "best_epoch"):
            setattr(self, field, meta[field])
        self.rng.bit_generator.state = meta["solver_rng"]
        self.model.rng.bit_generator.state = meta["model_rng"]
        best_path = Path(path).with_name("best.npz")
        if best_path.is_file():
            self.best_state, _ = load_arrays_and_meta(best_path)
        return self

    # ------------------------------------------------------------------

    def _notify(self, event, info):
        for callback in self.callbacks:
            callback(event, self, info)

    def _say(self, message):
        if self.verbose:
            tqdm.write(message, file=sys.stdout)
