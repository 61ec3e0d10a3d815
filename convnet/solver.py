"""Solver: trains a model with minibatch gradient descent (CS231n-compatible constructor).

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    batch_size=50, num_epochs=1, seed=0)
    solver.train()

``data`` holds X_train, y_train and optionally X_val, y_val. A model needs only ``params``
(name -> array) and ``loss(X, y=None)``, as in CS231n; ``predict``, ``state`` and
``load_state`` are used when it has them. Training runs true epochs: every epoch visits
each training image once, in an order drawn without replacement, the last partial batch
included. A seed makes a run reproducible (same seed, same loss history).

This module is the loop only. After each epoch the Solver measures accuracy, keeps the
best state (by validation accuracy; by training accuracy when there is no validation
split, and then ``best_val_acc`` stays None) and sends events to its callbacks
(see convnet.callbacks): printing, the metrics log and checkpoint files hang on them.

Ctrl-C (SIGINT) or SIGTERM (what ``kill``, job schedulers and launchers send) during
train() only sets a flag, acted on between two steps and before and after the end-of-epoch
evaluation, so a checkpoint written on interrupt is a state the loop really passed through
and resuming it equals the uninterrupted run bit for bit; ``stop_signal`` names the signal.
A second one stops at once (KeyboardInterrupt), without saving. A NaN or infinite loss,
or non-finite parameters at the end of an epoch, stop training with
:class:`TrainingDiverged` before anything is checkpointed.
"""

import contextlib
import inspect
import math
import numbers
import signal
import threading
import time
from pathlib import Path

import numpy as np

from convnet import optim
from convnet.callbacks import LOOKAHEAD, Checkpoint, Lookahead, Progress
from convnet.checkpoint import load_model_state, model_state, restore_solver
from convnet.distributed import Local
from convnet.memory import reusing_memory
from convnet.models.base import TTA_MODES, predict_labels, regularized_names
from convnet.options import NONE, ConfigError, Option, check, choose, resolve
from convnet.schedules import SCHEDULES, make_schedule, resolve_schedule


#: How errors name a constructor argument: "Solver argument 'update_rule' must be one of ...".
ARGUMENT = "Solver argument"
POSITIVE = "[1, inf)"
#: The constructor arguments a config's solver section sets (convnet.config reads them): types,
#: ranges and the constructor's defaults, checked for every Solver.
OPTIONS = {
    "batch_size": Option(100, int, range=POSITIVE, help="images per update"),
    "num_epochs": Option(10, (int, float), range="(0, inf)",
                         help="passes over the training images; a fraction stops after ceil(num_epochs * "
                              "iterations per epoch) steps, the last epoch partial (still evaluated and saved)"),
    "num_train_samples": Option(1000, (int, NONE), range=POSITIVE,
                                help="training images used for the train accuracy after each epoch (`null`: all)"),
    "num_val_samples": Option(None, (int, NONE), range=POSITIVE, help="validation images per check (`null`: all)"),
    "print_every": Option(10, int, range=POSITIVE, help="print the loss every this many iterations (verbose)"),
    "eval_batch_size": Option(256, int, range=POSITIVE, help="images per forward pass when measuring accuracy"),
    "result": Option("best", str, choices=("best", "final"),
                     help="the state the run ends with and tests: `best` epoch (by val accuracy, else train "
                          "accuracy; CS231n) or `final` (after the last step; use it with data.num_validation: 0)"),
    "lookahead": Option(None, (dict, NONE), help="weight averaging (`null`: none); keys `solver.lookahead.*`"),
    "tta": Option(None, (str, NONE), choices=TTA_MODES,
                  help="test-time augmentation in the val and test accuracy (image models): `flip` averages the "
                       "logits of x and its mirror; `flip_translate` adds 1-pixel shifts"),
}
# Acted on between two steps: Ctrl-C, and the polite stop that kill, schedulers and launchers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def training_length(num_epochs, iterations_per_epoch):
    """(updates, epochs) of a run of ``num_epochs`` passes at ``iterations_per_epoch`` steps each: updates is
    ceil(num_epochs * iterations_per_epoch), at least 1; the last of the epochs may be partial.

    The product is rounded to 6 decimals first, so that 1.1 epochs of 50 steps is 55 updates, not 56 (the
    float product is 55.00000000000001)."""
    updates = max(1, math.ceil(round(num_epochs * iterations_per_epoch, 6)))
    return updates, math.ceil(updates / iterations_per_epoch)


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became NaN or infinite."""


class Solver:
    """Trains ``model`` on ``data``; see the module docstring.

    CS231n arguments: update_rule (name in optim.RULES, or a function), optim_config,
    lr_decay (per-epoch multiplier, used when no schedule is given), batch_size, num_epochs,
    num_train_samples (training images sampled for the per-epoch train accuracy; None = all),
    num_val_samples (None = the whole validation split), checkpoint_name (also write
    '{checkpoint_name}_epoch_{e}.npz' after each epoch), print_every, verbose.
    Extensions: schedule (see convnet.schedules.make_schedule), seed, augment (a function
    (X_batch, rng) -> X_batch applied to each training batch), callbacks (functions
    (event, solver, info); events in convnet.callbacks), checkpoint_dir (checkpoint.npz and
    best.npz there), progress (tqdm bar; default: when verbose and stderr is a terminal),
    eval_batch_size, inference (a convnet.checkpoint.Inference: the resolved config, normalisation
    statistics and class names, written into every checkpoint so the trained model predicts on its own),
    groups (parameter groups, see convnet.optim.GROUP), result ('best' | 'final'), lookahead (None or
    {every, decay, power}: see convnet.callbacks.Lookahead), tta (None | 'flip' | 'flip_translate'),
    communicator (convnet.distributed: Local, the default, or MPI for data-parallel ranks).

    ``augment`` may also take keyword arguments ``indices`` (the batch's rows of X_train) and ``epoch``
    (0-based); the Solver passes them when its signature has both (convnet.augment's alternating flip).
    """

    def __init__(self, model, data, update_rule="sgd", optim_config=None, lr_decay=1.0, batch_size=100,
                 num_epochs=10, num_train_samples=1000, num_val_samples=None, checkpoint_name=None,
                 print_every=10, verbose=True, schedule=None, seed=None, augment=None, callbacks=(),
                 checkpoint_dir=None, progress=None, eval_batch_size=256, inference=None, groups=None,
                 result="best", lookahead=None, tta=None, communicator=None):
        self.model = model
        self.X_train, self.y_train = data["X_train"], np.asarray(data["y_train"])
        self.X_val, self.y_val = data.get("X_val"), data.get("y_val")
        if len(self.X_train) != len(self.y_train) or len(self.X_train) == 0:
            raise ValueError(f"X_train and y_train must hold the same, non-zero number of samples, "
                             f"got {len(self.X_train)} and {len(self.y_train)}")
        arguments = {"batch_size": batch_size, "num_epochs": num_epochs, "num_train_samples": num_train_samples,
                     "num_val_samples": num_val_samples, "print_every": print_every,
                     "eval_batch_size": eval_batch_size, "result": result, "lookahead": lookahead, "tta": tta}
        arguments = {key: check(key, value, OPTIONS[key], label=ARGUMENT) for key, value in arguments.items()}
        if isinstance(update_rule, str):
            self.update_rule_name = update_rule
            self.update_rule = choose("update_rule", update_rule, optim.RULES, label=ARGUMENT).update
        else:
            self.update_rule_name, self.update_rule = getattr(update_rule, "__name__", "custom"), update_rule
        self.optim_config = dict(optim_config or {})
        declared = optim.RULES.get(self.update_rule_name)
        default_lr = declared.default_learning_rate if declared else optim.RULES["sgd"].default_learning_rate
        self.base_lr = self.optim_config.get("learning_rate", default_lr)
        if schedule is None and lr_decay != 1.0:
            decay = check("lr_decay", lr_decay, SCHEDULES["exponential"].options["decay"], label=ARGUMENT)
            schedule = {"type": "exponential", "decay": decay}
        self.schedule_spec = resolve_schedule(schedule, label=ARGUMENT)  # in checkpoints: a resume keeps it
        self.schedule = make_schedule(self.schedule_spec, self.base_lr, arguments["num_epochs"], label=ARGUMENT,
                                      epochs_key="num_epochs")
        self.batch_size = arguments["batch_size"]
        self.num_epochs = arguments["num_epochs"]
        self.num_train_samples = arguments["num_train_samples"]
        self.num_val_samples = arguments["num_val_samples"]
        self.checkpoint_name = checkpoint_name
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.print_every = arguments["print_every"]
        self.verbose = verbose
        self.augment = augment
        self._augment_takes_positions = _takes_keywords(augment, ("indices", "epoch"))
        self.eval_batch_size = arguments["eval_batch_size"]
        self.seed = int(seed) if isinstance(seed, numbers.Integral) else None  # None: unseeded (or a Generator)
        self.rng = np.random.default_rng(seed)
        self.inference = inference  # written into checkpoints, never read by the loop
        self.communicator = communicator if communicator is not None else Local()
        self.iterations_per_epoch = math.ceil(len(self.X_train) / self.batch_size)
        self.total_iterations, self.epoch_count = training_length(self.num_epochs, self.iterations_per_epoch)
        self.result = arguments["result"]
        self.tta = self._check_tta(arguments["tta"])
        self._plan_parameters(groups)
        self.lookahead = None
        if arguments["lookahead"] is not None:
            self.lookahead = Lookahead(**resolve("lookahead", arguments["lookahead"], LOOKAHEAD, label=ARGUMENT))
        self.callbacks = [Progress(progress), *callbacks]
        if self.lookahead is not None:  # before Checkpoint: a checkpoint holds the state after its update
            self.callbacks.append(self.lookahead)
        if checkpoint_dir is not None or checkpoint_name is not None:
            self.callbacks.append(Checkpoint(checkpoint_dir, checkpoint_name))
        self._reset()

    def _check_tta(self, tta):
        if tta is not None and np.ndim(self.X_train) != 4:
            raise ConfigError(f"{ARGUMENT} 'tta' ({tta!r}) needs images (N, C, H, W), but X_train has shape "
                              f"{np.shape(self.X_train)}: test-time augmentation mirrors and shifts images")
        return tta

    def _plan_parameters(self, groups):
        """Decide once, for every update rule, each parameter's learning-rate multiplier, weight decay and
        freeze epoch (convnet.optim.plan_parameters), and merge the freeze epochs into model.freeze_after."""
        self.groups = optim.resolve_groups(groups, "groups", label=ARGUMENT)
        self.plans = optim.plan_parameters(self.groups, self.model.params, "groups", label=ARGUMENT)
        own = {name: epoch for name, epoch in (getattr(self.model, "freeze_after", None) or {}).items()
               if epoch is not None}  # the model's blocks' own (e.g. a whitening layer's)
        optim.check_freeze_epochs(own, self.num_epochs, "model", label=ARGUMENT)
        grouped = {name: plan.freeze_after for name, plan in self.plans.items() if plan.freeze_after is not None}
        optim.check_freeze_epochs(grouped, self.num_epochs, "groups", label=ARGUMENT)
        self.freeze_after = optim.merge_freeze_epochs(own, grouped)
        if self.freeze_after or hasattr(self.model, "freeze_after"):
            self.model.freeze_after = dict(self.freeze_after)
        # A group's weight_decay replaces the model's own L2 (model.reg) for its parameters: the gradient,
        # which already holds reg * W for a regularised one, gets (weight_decay - reg) * W more.
        reg, regularized = float(getattr(self.model, "reg", 0.0) or 0.0), self._regularized()
        model_decay = {name: reg if name in regularized else 0.0 for name in self.model.params}
        self.extra_decay = {name: plan.weight_decay - model_decay[name] for name, plan in self.plans.items()
                            if plan.weight_decay is not None and plan.weight_decay != model_decay[name]}

    def _regularized(self):
        """The parameters under the model's L2 rule, which weight decay follows (convnet.models.base)."""
        return set(self.model.regularized() if hasattr(self.model, "regularized")
                   else regularized_names(self.model.params))

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
        self.best_score = None  # the accuracy the best state was chosen by (val, else train)
        self.best_val_acc = None  # None until an epoch is validated
        self.best_epoch = 0
        self.best_state = None
        self.interrupted = False
        self.stop_signal = None  # the signal.Signals that stopped the last train() call (SIGINT, SIGTERM)
        self.last_checkpoint = None  # the newest checkpoint this solver wrote ('checkpoint' event)
        self.resumed_from = None  # the checkpoint load_checkpoint restored, if any
        self._checkpointed_at = {}  # path -> (epoch, iteration) of the state it holds
        self._stop_requested = False
        self._initialized_from_data = False  # model.initialize_from_data runs once, before a fresh run's first step
        self.epoch_train_seconds, self.epoch_images = 0.0, 0  # the current epoch's so far
        decayed = self._regularized()  # adamw's decoupled decay follows the model's L2 rule
        self.optim_configs = {}
        for name in self.model.params:
            config = dict(self.optim_config)
            if name not in decayed:
                config["weight_decay"] = 0.0
            self.optim_configs[name] = config

    @property
    def has_validation(self):
        return self.X_val is not None and len(self.X_val) > 0

    @property
    def best_selected_by(self):
        """What chose best_state: 'final' (result: final keeps the last epoch's), 'val_acc' or 'train_acc'."""
        if self.result == "final":
            return "final"
        return "val_acc" if self.has_validation else "train_acc"

    def epoch_length(self, epoch):
        """Steps in epoch ``epoch`` (0-based): iterations_per_epoch, fewer in a partial last epoch."""
        return max(0, min(self.iterations_per_epoch, self.total_iterations - epoch * self.iterations_per_epoch))

    @property
    def best_params(self):
        """The best epoch's parameters, keyed like ``model.params`` (copies), so that
        ``model.params = solver.best_params`` works as in CS231n. ``best_state`` holds them
        with the batch-norm running statistics ('param/<name>', 'bn/<layer>/<stat>')."""
        if self.best_state is None:
            return {}
        return {key[len("param/"):]: value.copy() for key, value in self.best_state.items()
                if key.startswith("param/")}

    @property
    def checkpoint_of_this_state(self):
        """The checkpoint file that holds the current state (the one written at this position,
        or the one resumed from when no step was made since), else None."""
        for path in (self.last_checkpoint, self.resumed_from):
            if path is not None and self._checkpointed_at.get(path) == (self.epoch, self.iteration):
                return path
        return None

    @property
    def progress_epochs(self):
        """Training progress in epochs, e.g. 2.5 halfway through the third epoch."""
        return self.epoch + self.batch_in_epoch / self.iterations_per_epoch

    # ------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------

    def step(self):
        """One update on the next minibatch of the current epoch; returns (images, loss, lr)."""
        self._initialize_from_data()
        if self.epoch_order is None:
            self.epoch_order = self.rng.permutation(len(self.X_train))
            self.batch_in_epoch = 0
        frozen = self._apply_freezing()
        start = self.batch_in_epoch * self.batch_size
        indices = self.epoch_order[start : start + self.batch_size]
        X_batch, y_batch = self.X_train[indices], self.y_train[indices]
        if self.augment is not None:
            X_batch = self._augmented(X_batch, indices)
        # The loss and gradients of the whole batch (each rank computes its shard's; see convnet.distributed).
        loss, grads = self.communicator.loss_and_grads(self.model, X_batch, y_batch, self._stop_requested)
        if not np.isfinite(loss):
            self._diverged(f"loss became {loss} at epoch {self.progress_epochs:.2f} (iteration {self.iteration + 1}, "
                           f"learning rate {self.lr_history[-1] if self.lr_history else self.base_lr:g})")
        lr = self.schedule(self.progress_epochs)
        self._update(grads, lr, frozen)
        self.loss_history.append(float(loss))
        self.lr_history.append(lr)
        self.batch_in_epoch += 1
        self.iteration += 1
        return len(indices), float(loss), lr

    def _augmented(self, X_batch, indices):
        """augment(X_batch, rng), with the batch's training-set indices and the epoch when it takes them."""
        if self._augment_takes_positions:
            return self.augment(X_batch, self.rng, indices=indices, epoch=self.epoch)
        return self.augment(X_batch, self.rng)

    def _update(self, grads, lr, frozen):
        """Apply the update rule to every parameter with a gradient that is not frozen, with its group's
        learning-rate multiplier and weight decay (decided once in _plan_parameters)."""
        for name, w in self.model.params.items():
            if name in frozen or name not in grads:  # a frozen parameter's block computes no gradient
                continue
            dw = grads[name]
            if name in self.extra_decay:
                dw = dw + self.extra_decay[name] * w
            config = self.optim_configs[name]
            config["learning_rate"] = lr * self.plans[name].lr_multiplier
            self.model.params[name], self.optim_configs[name] = self.update_rule(w, dw, config)

    def _apply_freezing(self):
        """model.frozen for the current epoch: a pure function of the epoch, so a resume needs no state."""
        if not self.freeze_after:
            return frozenset()
        frozen = {name for name, epoch in self.freeze_after.items() if self.epoch >= epoch}
        if getattr(self.model, "frozen", None) != frozen:
            self.model.frozen = frozen
        return frozen

    def _initialize_from_data(self):
        """model.initialize_from_data(X_train) once, before the first step of a fresh run (never on a
        resume: what it computes is a parameter, restored from the checkpoint)."""
        if self._initialized_from_data:
            return
        self._initialized_from_data = True
        if self.iteration == 0 and hasattr(self.model, "initialize_from_data"):
            self.model.initialize_from_data(self.X_train)

    def train(self, epochs=None):
        """Train until num_epochs are done (or for at most ``epochs`` more epochs this call).

        At the end of the last epoch the model is given the best state seen (CS231n).
        Returns self; ``self.interrupted`` tells whether a Ctrl-C or SIGTERM stopped it
        (``self.stop_signal``: which). The large arrays of one step reuse the memory of the
        previous step's (convnet.memory.reusing_memory).
        """
        stop_at = self.epoch_count if epochs is None else min(self.epoch_count, self.epoch + epochs)
        self.interrupted, self._stop_requested, self.stop_signal = False, False, None
        with self._stop_signals_caught(), reusing_memory():
            self._initialize_from_data()  # before 'start': a lookahead average starts from the initialised model
            self.notify("start", {"epoch": self.epoch, "iteration": self.iteration})
            while self.epoch < stop_at:
                if self.batch_in_epoch == 0:
                    self.epoch_train_seconds, self.epoch_images = 0.0, 0
                self.notify("epoch_start", {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch})
                while self.batch_in_epoch < self.epoch_length(self.epoch):
                    started = time.perf_counter()
                    count, loss, lr = self.step()
                    self.epoch_train_seconds += time.perf_counter() - started
                    self.epoch_images += count
                    self.notify("iteration", {"iteration": self.iteration, "epoch": self.progress_epochs,
                                              "loss": loss, "learning_rate": lr, "images": count})
                    if self.communicator.stop_after_step(self._stop_requested):  # the same step on every rank
                        return self._interrupt()
                self._check_parameters()
                if self.communicator.any(self._stop_requested):  # before the evaluation
                    return self._interrupt()
                self._end_of_epoch()
                if self.communicator.any(self._stop_requested):  # during the evaluation: the epoch is complete and saved
                    return self._interrupt()
        if self.epoch >= self.epoch_count and self.best_state is not None and self.result == "best":
            load_model_state(self.model, self.best_state)
        self.notify("end", {"best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch})
        return self

    def _end_of_epoch(self):
        self.communicator.end_of_epoch(self.model, self.lookahead)  # ranks average their batch-norm statistics
        # TTA is for the val and test accuracy; the train accuracy follows training progress.
        train_acc = self.check_accuracy(self.X_train, self.y_train, self.num_train_samples, tta=None)
        val_acc = self.check_accuracy(self.X_val, self.y_val, self.num_val_samples) if self.has_validation else None
        steps = self.epoch_length(self.epoch)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        self.epoch_seconds.append(self.epoch_train_seconds)
        self.train_seconds += self.epoch_train_seconds
        self.epoch += 1
        self.epoch_order, self.batch_in_epoch = None, 0
        score = val_acc if val_acc is not None else train_acc
        if self.best_score is None or score > self.best_score or self.result == "final":
            self.best_score, self.best_val_acc, self.best_epoch = score, val_acc, self.epoch
            self.best_state = model_state(self.model)
        seconds = self.epoch_train_seconds
        self.notify("epoch", {"epoch": self.epoch, "train_acc": train_acc, "val_acc": val_acc,
                              "loss": float(np.mean(self.loss_history[-steps:])),
                              "learning_rate": self.lr_history[-1], "seconds": seconds,
                              "images_per_second": self.epoch_images / seconds if seconds > 0 else float("nan")})

    def check_accuracy(self, X, y, num_samples=None, batch_size=None, tta="solver"):
        """Fraction of correctly classified samples, computed in batches in test mode.

        num_samples: evaluate a random subset of this size (drawn from the solver's generator);
        None evaluates the whole split. tta: the test-time augmentation (default: the solver's).
        Each rank predicts its shard of the images and the counts are summed.
        """
        y = np.asarray(y)
        if num_samples is not None and len(X) > num_samples:
            subset = self.rng.choice(len(X), num_samples, replace=False)
            X, y = X[subset], y[subset]
        batch_size = batch_size or self.eval_batch_size
        rows = self.communicator.shard(len(X))
        X, y = X[rows], y[rows]
        correct = 0
        if len(X):
            predictions = self._predict(X, batch_size, self.tta if tta == "solver" else tta)
            correct = np.count_nonzero(predictions == y)
        correct, total = self.communicator.sum([correct, len(y)])
        return float(correct / total)

    def _predict(self, X, batch_size, tta):
        """Labels for X: the model's own predict, else (a model with only loss(X), or with TTA) predict_labels."""
        if tta is None and hasattr(self.model, "predict"):
            return self.model.predict(X, batch_size)
        return predict_labels(self.model, X, batch_size, tta=tta)

    def load_checkpoint(self, path, contents=None):
        """Restore a checkpoint written by this Solver's checkpointing (same model and data).

        ``contents``: convnet.checkpoint.read_checkpoint(path), when the caller has read it already.

        Numpy's global generator is restored only for a model without its own ``rng`` (one
        that draws from ``np.random``); otherwise the caller's stays as it was. Raises
        convnet.checkpoint.CheckpointError, naming the file, for a damaged, incomplete or
        mismatched checkpoint.
        """
        self._reset()
        restore_solver(self, path, contents)
        self._initialized_from_data = True  # the checkpoint holds what it computed
        self.resumed_from = Path(path)
        self._checkpointed_at[self.resumed_from] = (self.epoch, self.iteration)
        return self

    def notify(self, event, info):
        """Send ``event`` to every callback (callbacks call it too, e.g. for 'checkpoint')."""
        if event == "checkpoint":
            self.last_checkpoint = Path(info["path"])
            self._checkpointed_at[self.last_checkpoint] = (self.epoch, self.iteration)
        for callback in self.callbacks:
            callback(event, self, info)

    # ------------------------------------------------------------------
    # interrupts and divergence
    # ------------------------------------------------------------------

    @contextlib.contextmanager
    def _stop_signals_caught(self):
        """Within the block, SIGINT and SIGTERM set a flag for the loop; the previous handlers are put
        back after it (nothing changes off the main thread, where handlers cannot be set)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_requested:  # a second one: stop now, without saving
                raise KeyboardInterrupt
            self._stop_requested, self.stop_signal = True, signal.Signals(signum)

        previous = {}
        for signum in STOP_SIGNALS:
            handler = signal.getsignal(signum)
            previous[signum] = handler if handler is not None else signal.SIG_DFL
            signal.signal(signum, request_stop)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _interrupt(self):
        self._check_parameters()
        self.communicator.average_running_statistics(self.model, self.lookahead)  # the checkpoint's, not rank 0's
        self.interrupted = True
        self.notify("interrupt", {"epoch": self.progress_epochs, "iteration": self.iteration,
                                  "signal": self.stop_signal.name if self.stop_signal is not None else None})
        return self

    def _check_parameters(self):
        bad = [name for name, value in self.model.params.items() if not np.all(np.isfinite(value))]
        if bad:
            self._diverged(f"parameter(s) {', '.join(bad)} became NaN or infinite by epoch {self.progress_epochs:.2f} "
                           f"(iteration {self.iteration})")

    def _diverged(self, what):
        last_good = self.last_checkpoint or self.resumed_from
        if last_good is not None:
            where = f"; the last good checkpoint, {last_good}, is intact"
        elif self.checkpoint_dir is not None or self.checkpoint_name is not None:
            where = "; no checkpoint had been written yet"
        else:
            where = ""
        raise TrainingDiverged(f"{what}{where}. Lower the learning rate or add normalisation.")


def _takes_keywords(function, names):
    """Whether ``function`` accepts every keyword argument in ``names`` (False when it cannot be inspected)."""
    if function is None:
        return False
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True
    return all(name in parameters and parameters[name].kind is not inspect.Parameter.POSITIONAL_ONLY
               for name in names)
