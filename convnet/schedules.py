"""Learning-rate schedules: functions of training progress measured in epochs.

A schedule maps ``epoch`` (a float: 2.5 is halfway through the third epoch) to the
learning rate. The Solver evaluates it before every update, so warm-ups and cosine
decays are smooth within an epoch; per-epoch rules (exponential, step) are constant
within an epoch.

    make_schedule({"type": "cosine", "warmup_epochs": 1}, base_lr=0.1, num_epochs=30)

Each type and its options (types, ranges, defaults) are declared once, in SCHEDULES; the
builders below take every option, resolved, from there.
"""

import math
from typing import Callable, NamedTuple

from convnet.options import ConfigError, Option, choose, resolve


class Schedule(NamedTuple):
    """A schedule type: its options (declared once: validation and docs read them) and its builder.

    problem: (num_epochs, epochs_key, **options) -> (option, reason) for options that do not
    fit together or with the length of training (epochs_key: how the message names num_epochs),
    else None. None: every combination fits. follows_num_epochs: whether the rate at an epoch
    depends on num_epochs (then a resume cannot change it: convnet.checkpoint).
    """

    build: Callable  # (base_lr, num_epochs, **options) -> lr(epoch)
    options: dict
    help: str
    problem: Callable = None
    follows_num_epochs: bool = True


def constant(base_lr):
    return lambda epoch: base_lr


def exponential(base_lr, decay):
    """lr = base_lr * decay ** floor(epoch): CS231n's lr_decay, applied after each epoch."""
    return lambda epoch: base_lr * decay ** math.floor(epoch)


def step(base_lr, step_size, gamma, milestones):
    """Multiply by gamma every step_size epochs, or at each epoch listed in milestones (increasing)."""
    if milestones is not None:
        return lambda epoch: base_lr * gamma ** sum(1 for m in milestones if epoch >= m)
    return lambda epoch: base_lr * gamma ** math.floor(epoch / step_size)


def cosine(base_lr, num_epochs, warmup_epochs, min_lr):
    """Linear warm-up from 0 to base_lr over warmup_epochs, then a half cosine down to min_lr."""

    def lr(epoch):
        if epoch < warmup_epochs:
            return base_lr * epoch / warmup_epochs
        progress = min(1.0, (epoch - warmup_epochs) / (num_epochs - warmup_epochs))  # warm-up < num_epochs
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))

    return lr


def onecycle(base_lr, num_epochs, peak_epoch, start_factor, final_factor):
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


def piecewise_linear(base_lr, num_epochs, points):
    """base_lr times a piecewise linear function of the fraction of training done, x = epoch / num_epochs
    (0 at the start, 1 at the end): ``points`` [[x, y], ...] with increasing x in [0, 1], y the multiplier;
    linear in between, the first and last y held outside the points."""
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]

    def lr(epoch):
        x = epoch / num_epochs
        if x <= xs[0]:
            return base_lr * ys[0]
        for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:]):
            if x <= x1:
                return base_lr * (y0 + (y1 - y0) * (x - x0) / (x1 - x0))
        return base_lr * ys[-1]

    return lr


def _points_problem(num_epochs, epochs_key, points):
    """(option, reason) unless the points' x are increasing and within [0, 1]."""
    xs = [x for x, _ in points]
    if any(not 0.0 <= x <= 1.0 for x in xs):
        return "points", f"must have every x (the fraction of training) in [0, 1], got {points}"
    if any(a >= b for a, b in zip(xs, xs[1:])):
        return "points", f"must have increasing x (the fraction of training), got {points}"
    return None


def _before_the_end(option, epoch, num_epochs, epochs_key):
    """(option, reason) if epoch is not before the end of training (None: not set), else None."""
    if epoch is not None and epoch >= num_epochs:
        return option, f"must be less than {epochs_key} ({num_epochs}), got {epoch:g}"
    return None


SCHEDULES = {
    "constant": Schedule(lambda base_lr, num_epochs: constant(base_lr), {}, "the base learning rate throughout",
                         follows_num_epochs=False),
    "exponential": Schedule(
        lambda base_lr, num_epochs, **o: exponential(base_lr, **o),
        {"decay": Option(0.95, float, range="(0, 1]", help="factor applied after each epoch")},
        "CS231n's lr_decay: base * decay ** completed_epochs", follows_num_epochs=False),
    "step": Schedule(
        lambda base_lr, num_epochs, **o: step(base_lr, **o),
        {"step_size": Option(10, int, range="[1, inf)", help="epochs between decays"),
         "gamma": Option(0.1, float, range="(0, 1]", help="factor applied at each decay"),
         "milestones": Option(None, (list, type(None)), each=Option(None, int, range="[1, inf)"),
                              help="increasing epochs at which to decay (replaces step_size)")},
        "multiply by gamma every step_size epochs, or at each milestone",
        lambda num_epochs, epochs_key, milestones, **_: (
            ("milestones", f"must be increasing, got {milestones}")
            if milestones is not None and any(a >= b for a, b in zip(milestones, milestones[1:])) else None),
        follows_num_epochs=False),
    "cosine": Schedule(
        cosine,
        {"warmup_epochs": Option(0.0, float, range="[0, inf)", help="linear warm-up from 0 over this many epochs (fewer than solver.num_epochs)"),
         "min_lr": Option(0.0, float, range="[0, inf)", help="learning rate at the end")},
        "linear warm-up, then a half cosine down to min_lr",
        lambda num_epochs, epochs_key, warmup_epochs, **_: _before_the_end(
            "warmup_epochs", warmup_epochs, num_epochs, epochs_key)),
    "onecycle": Schedule(
        onecycle,
        {"peak_epoch": Option(None, (float, type(None)), range="[0, inf)",
                              help="epoch of the peak, before solver.num_epochs (null: 30% of training)"),
         "start_factor": Option(0.1, float, range="(0, inf)", help="start at start_factor * base"),
         "final_factor": Option(0.001, float, range="[0, inf)", help="end at final_factor * base")},
        "linear up to the base rate at peak_epoch, then linear down",
        lambda num_epochs, epochs_key, peak_epoch, **_: _before_the_end(
            "peak_epoch", peak_epoch, num_epochs, epochs_key)),
    "piecewise_linear": Schedule(
        piecewise_linear,
        {"points": Option([[0.0, 1.0], [1.0, 1.0]], list,
                          each=Option(None, list, each=Option(None, float, range="[0, inf)"), length=2),
                          help="[[x, y], ...]: x the fraction of training (0..1, increasing), y the multiplier "
                               "of the learning rate; at least 2 points")},
        "the learning rate times a piecewise linear function of the fraction of training",
        lambda num_epochs, epochs_key, points, **_: (
            ("points", f"must hold at least 2 [x, y] points, got {points}") if len(points) < 2
            else _points_problem(num_epochs, epochs_key, points))),
}


#: The config key schedule.type: which schedule, by name.
TYPE = Option("constant", str, choices=tuple(SCHEDULES), help="the schedule; its options are below")


def resolve_schedule(spec, where="schedule", label="config key"):
    """{'type': ..., every option}: the spec checked against SCHEDULES, defaults filled in.

    spec: None (constant), a type name, or {"type": ..., options}. Raises ConfigError
    (a ValueError) naming the key (label: see convnet.options).
    """
    if spec is None:
        spec = {}
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        return resolve(where, spec, {}, label=label)  # raises: must be a mapping
    spec = dict(spec)
    kind = spec.pop("type", TYPE.default)
    options = choose(f"{where}.type", kind, SCHEDULES, label=label).options
    return {"type": kind, **resolve(where, spec, options, context=f" for {kind}", label=label)}


def check_schedule(options, num_epochs, where="schedule", epochs_key="solver.num_epochs", label="config key"):
    """ConfigError if resolved options do not fit together or with num_epochs (e.g. a cosine
    warm-up that lasts all of training); epochs_key names num_epochs in the message."""
    schedule = SCHEDULES[options["type"]]
    if schedule.problem is None:
        return
    problem = schedule.problem(num_epochs, epochs_key, **{k: v for k, v in options.items() if k != "type"})
    if problem is not None:
        option, reason = problem
        raise ConfigError(f"{label} '{where}.{option}' {reason}")


def make_schedule(spec, base_lr, num_epochs, label="config key", epochs_key="solver.num_epochs"):
    """A function lr(epoch) from a spec: None, a type name or {"type": ..., options}.

    Types and options (with their defaults and ranges) are declared in SCHEDULES; an
    unknown type or option, a value out of range, or options that do not fit num_epochs
    raise ConfigError (a ValueError).
    """
    options = resolve_schedule(spec, label=label)
    check_schedule(options, num_epochs, epochs_key=epochs_key, label=label)
    kind = options.pop("type")
    return SCHEDULES[kind].build(base_lr, num_epochs, **options)
