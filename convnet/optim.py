"""First-order update rules with the CS231n signature.

    next_w, config = rule(w, dw, config)

``w`` is updated in place (and returned); ``config`` holds the hyperparameters and the
rule's state (velocity, moment estimates, step count), created on the first call.
Every rule reads ``config['learning_rate']``, which the Solver's schedule sets each step.

``RULES`` is the one registry: each rule's function and its hyperparameters, declared as
Options whose defaults are the ones the rule uses (a hyperparameter left out of ``config``
takes its declared default). The Solver, config validation and the docs table read it.
"""

import fnmatch
import functools
from typing import Callable, NamedTuple

import numpy as np

from convnet.options import ConfigError, Option, check, resolve


class UpdateRule(NamedTuple):
    """One entry of RULES: ``update(w, dw, config) -> (next_w, config)`` and its hyperparameters."""

    update: Callable
    options: dict  # {name: Option}: what a config may set, with the defaults the rule uses
    help: str

    @property
    def default_learning_rate(self):
        return self.options["learning_rate"].default


#: Every update rule by name (see UpdateRule); filled in by the @update_rule declarations below.
RULES = {}


def update_rule(help, **options):
    """Declare the decorated ``f(w, dw, config)`` as a rule with these hyperparameters: it is
    entered in RULES under its name and called with every hyperparameter left out of config
    set to its declared default (config=None is an empty config, as in CS231n)."""

    def declare(function):
        def rule(w, dw, config=None):
            config = {} if config is None else config
            for key, declared in options.items():
                config.setdefault(key, declared.default)
            return function(w, dw, config)

        functools.update_wrapper(rule, function)
        del rule.__wrapped__  # its signature is the CS231n one, rule(w, dw, config=None)
        RULES[function.__name__] = UpdateRule(rule, options, help)
        return rule

    return declare


def _rate(default):
    return Option(default, float, range="[0, inf)", help="step size")


def _decay(default):
    return Option(default, float, range="[0, 1)", help="weight of the running average")


EPSILON = Option(1e-8, float, range="(0, inf)", help="added to the denominator")


@update_rule("w -= learning_rate * dw", learning_rate=_rate(1e-2))
def sgd(w, dw, config):
    """Vanilla stochastic gradient descent: w -= learning_rate * dw."""
    w -= config["learning_rate"] * dw
    return w, config


@update_rule("v = momentum * v - learning_rate * dw; w += v", learning_rate=_rate(1e-2), momentum=_decay(0.9))
def sgd_momentum(w, dw, config):
    """SGD with momentum: v = momentum * v - learning_rate * dw; w += v (state: velocity, zeros like w)."""
    v = config.setdefault("velocity", np.zeros_like(w))
    v *= config["momentum"]
    v -= config["learning_rate"] * dw
    w += v
    return w, config


@update_rule("momentum evaluated at the look-ahead point", learning_rate=_rate(1e-2), momentum=_decay(0.9))
def nesterov(w, dw, config):
    """Nesterov momentum in the form that tracks the look-ahead point:
    v_new = momentum * v - learning_rate * dw; w += -momentum * v + (1 + momentum) * v_new.
    State: velocity (zeros like w)."""
    mu = config["momentum"]
    v = config.setdefault("velocity", np.zeros_like(w))
    v_old = v.copy()
    v *= mu
    v -= config["learning_rate"] * dw
    w += (1 + mu) * v - mu * v_old
    return w, config


@update_rule("divide the step by a running RMS of the gradient", learning_rate=_rate(1e-2),
             decay_rate=_decay(0.99), epsilon=EPSILON)
def rmsprop(w, dw, config):
    """RMSProp: cache = decay * cache + (1 - decay) * dw^2; w -= lr * dw / (sqrt(cache) + eps).
    State: cache (zeros like w)."""
    cache = config.setdefault("cache", np.zeros_like(w))
    decay = config["decay_rate"]
    cache *= decay
    cache += (1 - decay) * dw * dw
    w -= config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])
    return w, config


def _adam_step(w, dw, config):
    """Bias-corrected Adam direction m_hat / (sqrt(v_hat) + eps); advances m, v and t."""
    m = config.setdefault("m", np.zeros_like(w))
    v = config.setdefault("v", np.zeros_like(w))
    config["t"] = config.get("t", 0) + 1
    beta1, beta2, t = config["beta1"], config["beta2"], config["t"]
    m *= beta1
    m += (1 - beta1) * dw
    v *= beta2
    v += (1 - beta2) * dw * dw
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return m_hat / (np.sqrt(v_hat) + config["epsilon"])


ADAM_OPTIONS = {"learning_rate": _rate(1e-3), "beta1": _decay(0.9), "beta2": _decay(0.999), "epsilon": EPSILON}


@update_rule("Adam with bias correction", **ADAM_OPTIONS)
def adam(w, dw, config):
    """Adam (Kingma & Ba, 2015) with bias correction; state m, v, t."""
    w -= config["learning_rate"] * _adam_step(w, dw, config)
    return w, config


@update_rule("Adam plus decoupled weight decay", **ADAM_OPTIONS,
             weight_decay=Option(1e-2, float, range="[0, inf)", help="decoupled weight decay"))
def adamw(w, dw, config):
    """AdamW (Loshchilov & Hutter, 2019): Adam plus decoupled weight decay,
    w -= learning_rate * (adam_direction + weight_decay * w).

    The Solver sets weight_decay to 0 for the parameters the model does not regularise
    (biases, batch-norm gamma and beta).
    """
    direction = _adam_step(w, dw, config)
    direction += config["weight_decay"] * w
    w -= config["learning_rate"] * direction
    return w, config


#: The config key optim.rule: which rule, by name.
RULE = Option("sgd", str, choices=tuple(RULES), help="the update rule; its hyperparameters are below")

#: name -> rule function, for code that wants only the functions.
UPDATE_RULES = {name: rule.update for name, rule in RULES.items()}


# ----------------------------------------------------------------------
# parameter groups: learning-rate multiplier, weight decay and freezing, decided once for every rule
# ----------------------------------------------------------------------

#: The keys of one item of optim.groups. ``params`` is a glob (fnmatch on parameter names) or a list of globs.
GROUP = {
    "params": Option(None, (str, list), each=Option(None, str),
                     help="which parameters: a glob on their names (`*.beta`, `whiten1.*`) or a list of globs"),
    "lr_multiplier": Option(1.0, float, range="[0, inf)", help="their learning rate is optim.learning_rate times this"),
    "weight_decay": Option(None, (float, type(None)), range="[0, inf)",
                           help="coupled L2 added to their gradient before the rule (`null`: model.reg as today)"),
    "frozen": Option(False, bool, help="never updated (no gradient is computed for them)"),
    "freeze_after_epoch": Option(None, (int, type(None)), range="[0, inf)",
                                 help="frozen from the start of this epoch (0-based; less than solver.num_epochs)"),
}
#: The config key optim.groups: a list of GROUP mappings; the first group whose glob matches a name wins.
GROUPS = Option(None, (list, type(None)), help="parameter groups (`null`: none); each item's keys are `optim.groups[].*`")


def resolve_groups(groups, where="optim.groups", label="config key"):
    """The groups as a list of mappings with every GROUP key (params as a list of globs), or ConfigError."""
    groups = check(where, groups, GROUPS, label)
    resolved = []
    for i, group in enumerate(groups or []):
        path = f"{where}[{i}]"
        group = resolve(path, group, GROUP, label=label)
        if group["params"] is None:
            raise ConfigError(f"{label} '{path}.params' is required: a glob or a list of globs on parameter names")
        if isinstance(group["params"], str):
            group["params"] = [group["params"]]
        if not group["params"]:
            raise ConfigError(f"{label} '{path}.params' is an empty list; give at least one glob")
        resolved.append(group)
    return resolved


class ParameterPlan(NamedTuple):
    """What the groups decided for one parameter."""

    lr_multiplier: float
    weight_decay: object  # float, or None: the model's own L2 (model.reg) applies
    freeze_after: object  # int epoch from which it is frozen, or None: trained throughout


DEFAULT_PLAN = ParameterPlan(1.0, None, None)


def plan_parameters(groups, names, where="optim.groups", label="config key"):
    """{parameter name: ParameterPlan} for resolved ``groups`` (see resolve_groups) over ``names``.

    The first group with a glob matching a name decides it; unmatched names get DEFAULT_PLAN.
    A glob that matches no name at all is a ConfigError naming it (a typo would otherwise be silent).
    """
    names = list(names)
    for i, group in enumerate(groups):
        for j, pattern in enumerate(group["params"]):
            if not fnmatch.filter(names, pattern):
                path = f"{where}[{i}].params" + (f"[{j}]" if len(group["params"]) > 1 else "")
                raise ConfigError(f"{label} '{path}' is {pattern!r}, which matches no parameter of the model "
                                  f"(its parameters: {', '.join(names)})")
    plans = {}
    for name in names:
        group = next((g for g in groups if any(fnmatch.fnmatchcase(name, p) for p in g["params"])), None)
        if group is None:
            plans[name] = DEFAULT_PLAN
        else:
            freeze = 0 if group["frozen"] else group["freeze_after_epoch"]
            plans[name] = ParameterPlan(group["lr_multiplier"], group["weight_decay"], freeze)
    return plans


def merge_freeze_epochs(own, grouped):
    """{parameter name: epoch from which it is frozen}: the model's blocks' own freeze epochs (``own``, e.g.
    a whitening bias's bias_epochs) with the groups' (``grouped``, ParameterPlan.freeze_after); a parameter
    in both is frozen from the earlier epoch (a group can freeze earlier, never keep a block's frozen
    parameter training longer)."""
    return {**own, **{name: min(epoch, own.get(name, epoch)) for name, epoch in grouped.items()}}


def check_freeze_epochs(freeze_after, num_epochs, where="optim.groups", label="config key"):
    """ConfigError if a parameter is frozen from an epoch the run never reaches (>= num_epochs): the
    freezing would have no effect, which is a mistake in the epochs rather than a wish."""
    late = {name: epoch for name, epoch in freeze_after.items() if epoch is not None and epoch >= num_epochs}
    if late:
        name, epoch = next(iter(late.items()))
        raise ConfigError(f"{label} '{where}': parameter {name!r} would be frozen from epoch {epoch}, but the run "
                          f"has only {num_epochs:g} epochs (solver.num_epochs); freeze it earlier or drop it")
