"""Learning-rate schedules: functions of training progress measured in epochs.

A schedule maps ``epoch`` (a float: 2.5 is halfway through the third epoch) to the
learning rate. The Solver evaluates it before every update, so warm-ups and cosine
decays are smooth within an epoch; per-epoch rules (exponential, step) are constant
within an epoch.

    make_schedule({"type": "cosine", "warmup_epochs": 1}, base_lr=0.1, num_epochs=30)

Each type and its options (types, ranges, defaults) are declared once, in SCHEDULES.
"""

import math
from typing import Callable, NamedTuple

from convnet.options import Option, choose, resolve


class Schedule(NamedTuple):
    """A schedule type: its options (declared once: validation and docs read them) and its builder."""

    build: Callable  # (base_lr, num_epochs, **options) -> lr(epoch)
    options: dict
    help: str




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


SCHEDULES = {
    "constant": Schedule(lambda base_lr, num_epochs: constant(base_lr), {}, "the base learning rate throughout"),
    "exponential": Schedule(
        lambda base_lr, num_epochs, **o: exponential(base_lr, **o),
        {"decay": Option(0.95, float, range="(0, 1]", help="factor applied after each epoch")},
        "CS231n's lr_decay: base * decay ** completed_epochs"),
    "step": Schedule(
        lambda base_lr, num_epochs, **o: step(base_lr, **o),
        {"step_size": Option(10, int, range="[1, inf)", help="epochs between decays"),
         "gamma": Option(0.1, float, range="(0, 1]", help="factor applied at each decay"),
         "milestones": Option(None, (list, type(None)), each=Option(None, int, range="[1, inf)"),
                              help="epochs at which to decay (replaces step_size)")},
        "multiply by gamma every step_size epochs, or at each milestone"),
    "cosine": Schedule(
        cosine,
        {"warmup_epochs": Option(0.0, float, range="[0, inf)", help="linear warm-up from 0 over this many epochs"),
         "min_lr": Option(0.0, float, range="[0, inf)", help="learning rate at the end")},
        "linear warm-up, then a half cosine down to min_lr"),
    "onecycle": Schedule(
        onecycle,
        {"peak_epoch": Option(None, (float, type(None)), range="[0, inf)",
                              help="epoch of the peak (null: 30% of training)"),
         "start_factor": Option(0.1, float, range="(0, inf)", help="start at start_factor * base"),
         "final_factor": Option(0.001, float, range="[0, inf)", help="end at final_factor * base")},
        "linear up to the base rate at peak_epoch, then linear down"),
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


def make_schedule(spec, base_lr, num_epochs, label="config key"):
    """A function lr(epoch) from a spec: None, a type name or {"type": ..., options}.

    Types and options (with their defaults and ranges) are declared in SCHEDULES; an
    unknown type or option, or a value out of range, raises ConfigError (a ValueError).
    """
    options = resolve_schedule(spec, label=label)
    kind = options.pop("type")
    return SCHEDULES[kind].build(base_lr, num_epochs, **options)
