"""Learning-rate schedules: functions of training progress measured in epochs.

A schedule maps ``epoch`` (a float: 2.5 is halfway through the third epoch) to the
learning rate. The Solver evaluates it before every update, so warm-ups and cosine
decays are smooth within an epoch; per-epoch rules (exponential, step) are constant
within an epoch.

    make_schedule({"type": "cosine", "warmup_epochs": 1}, base_lr=0.1, num_epochs=30)
"""

import math

SCHEDULE_OPTIONS = {
    "constant": {},
    "exponential": {"decay": 0.95},  # CS231n's lr_decay: lr = base * decay ** completed_epochs
    "step": {"step_size": 10, "gamma": 0.1, "milestones": None},
    "cosine": {"warmup_epochs": 0.0, "min_lr": 0.0},
    "onecycle": {"peak_epoch": None, "start_factor": 0.1, "final_factor": 0.001},
}


def constant(base_lr):
    return lambda epoch: base_lr


def exponential(base_lr, decay):
    """lr = base_lr * decay ** floor(epoch): CS231n's lr_decay, applied after each epoch."""
    return lambda epoch: base_lr * decay ** math.floor(epoch)


def step(base_lr, step_size=10, gamma=0.1, milestones=None):
    """Multiply by gamma every step_size epochs, or at each epoch listed in milestones."""
    if milestones is not None:
        marks = sorted(milestones)
        return lambda epoch: base_lr * gamma ** sum(1 for m in marks if epoch >= m)
    return lambda epoch: base_lr * gamma ** math.floor(epoch / step_size)


def cosine(base_lr, num_epochs, warmup_epochs=0.0, min_lr=0.0):
    """Linear warm-up from 0 to base_lr over warmup_epochs, then a half cosine down to min_lr."""

    def lr(epoch):
        if epoch < warmup_epochs:
            return base_lr * epoch / warmup_epochs
        span = max(num_epochs - warmup_epochs, 1e-12)
        progress = min(1.0, (epoch - warmup_epochs) / span)
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))

    return lr


def onecycle(base_lr, num_epochs, peak_epoch=None, start_factor=0.1, final_factor=0.001):
    """Piecewise linear: start_factor * base_lr at epoch 0, base_lr (the peak) at peak_epoch
    (default: 30% of training), final_factor * base_lr at the end."""
    peak = 0.3 * num_epochs if peak_epoch is None else peak_epoch
    points = [(0.0, start_factor * base_lr), (peak, base_lr), (float(num_epochs), final_factor * base_lr)]

    def lr(epoch):
        for (e0, v0), (e1, v1) in zip(points, points[1:]):
            if epoch <= e1:
                return v0 + (v1 - v0) * (epoch - e0) / max(e1 - e0, 1e-12)
        return points[-1][1]

    return lr


def make_schedule(spec, base_lr, num_epochs):
    """A schedule from a spec: None or a type name or {"type": ..., options}.

    Options and defaults are listed in SCHEDULE_OPTIONS; unknown types or options raise
    ValueError naming what is allowed.
    """
    if spec is None:
        spec = {"type": "constant"}
    if isinstance(spec, str):
        spec = {"type": spec}
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in SCHEDULE_OPTIONS:
        raise ValueError(f"schedule type must be one of {sorted(SCHEDULE_OPTIONS)}, got {kind!r}")
    unknown = set(spec) - set(SCHEDULE_OPTIONS[kind])
    if unknown:
        raise ValueError(f"schedule {kind!r} has no option {sorted(unknown)} (allowed: {sorted(SCHEDULE_OPTIONS[kind])})")
    options = {**SCHEDULE_OPTIONS[kind], **spec}
    if kind == "constant":
        return constant(base_lr)
    if kind == "exponential":
        return exponential(base_lr, options["decay"])
    if kind == "step":
        return step(base_lr, options["step_size"], options["gamma"], options["milestones"])
    if kind == "cosine":
        return cosine(base_lr, num_epochs, options["warmup_epochs"], options["min_lr"])
    return onecycle(base_lr, num_epochs, options["peak_epoch"], options["start_factor"], options["final_factor"])
