"""First-order update rules with the CS231n signature.

    next_w, config = rule(w, dw, config)

``w`` is updated in place (and returned); ``config`` holds the hyperparameters and the
rule's state (velocity, moment estimates, step count), created on the first call.
Every rule reads ``config['learning_rate']``, which the Solver's schedule sets each step.
"""

import numpy as np

from convnet.options import Option

#: The learning rate each rule uses when config has none (CS231n's defaults).
DEFAULT_LEARNING_RATES = {
    "sgd": 1e-2,
    "sgd_momentum": 1e-2,
    "nesterov": 1e-2,
    "rmsprop": 1e-2,
    "adam": 1e-3,
    "adamw": 1e-3,
}


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: w -= learning_rate * dw.

    config: learning_rate (1e-2).
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", DEFAULT_LEARNING_RATES["sgd"])
    w -= config["learning_rate"] * dw
    return w, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: v = momentum * v - learning_rate * dw; w += v.

    config: learning_rate (1e-2), momentum (0.9), velocity (zeros like w).
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", DEFAULT_LEARNING_RATES["sgd_momentum"])
    config.setdefault("momentum", 0.9)
    v = config.setdefault("velocity", np.zeros_like(w))
    v *= config["momentum"]
    v -= config["learning_rate"] * dw
    w += v
    return w, config


def nesterov(w, dw, config=None):
    """Nesterov momentum in the form that tracks the look-ahead point:
    v_new = momentum * v - learning_rate * dw; w += -momentum * v + (1 + momentum) * v_new.

    config: learning_rate (1e-2), momentum (0.9), velocity (zeros like w).
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", DEFAULT_LEARNING_RATES["nesterov"])
    config.setdefault("momentum", 0.9)
    mu = config["momentum"]
    v = config.setdefault("velocity", np.zeros_like(w))
    v_old = v.copy()
    v *= mu
    v -= config["learning_rate"] * dw
    w += (1 + mu) * v - mu * v_old
    return w, config


def rmsprop(w, dw, config=None):
    """RMSProp: cache = decay * cache + (1 - decay) * dw^2; w -= lr * dw / (sqrt(cache) + eps).

    config: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache (zeros like w).
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", DEFAULT_LEARNING_RATES["rmsprop"])
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    cache = config.setdefault("cache", np.zeros_like(w))
    decay = config["decay_rate"]
    cache *= decay
    cache += (1 - decay) * dw * dw
    w -= config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])
    return w, config


def _adam_step(w, dw, config):
    """Bias-corrected Adam direction m_hat / (sqrt(v_hat) + eps); advances m, v and t."""
    config.setdefault("learning_rate", DEFAULT_LEARNING_RATES["adam"])
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
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


def adam(w, dw, config=None):
    """Adam (Kingma & Ba, 2015) with bias correction.

    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8); state m, v, t.
    """
    config = {} if config is None else config
    direction = _adam_step(w, dw, config)
    w -= config["learning_rate"] * direction
    return w, config


def adamw(w, dw, config=None):
    """AdamW (Loshchilov & Hutter, 2019): Adam plus decoupled weight decay,
    w -= learning_rate * (adam_direction + weight_decay * w).

    config: as adam, plus weight_decay (1e-2). The Solver sets weight_decay to 0 for
    one-dimensional parameters (biases, batch-norm gamma and beta).
    """
    config = {} if config is None else config
    config.setdefault("weight_decay", 1e-2)
    direction = _adam_step(w, dw, config)
    direction += config["weight_decay"] * w
    w -= config["learning_rate"] * direction
    return w, config


#: The hyperparameters each rule reads from its config (what a YAML experiment may set), with
#: their allowed values; a value left out takes the rule's own default (see each rule).
_RATE = Option(None, float, range="[0, inf)", help="step size")
_DECAY = Option(None, float, range="[0, 1)", help="weight of the running average")
_EPSILON = Option(None, float, range="(0, inf)", help="added to the denominator")
HYPERPARAMETERS = {
    "sgd": {"learning_rate": _RATE},
    "sgd_momentum": {"learning_rate": _RATE, "momentum": _DECAY},
    "nesterov": {"learning_rate": _RATE, "momentum": _DECAY},
    "rmsprop": {"learning_rate": _RATE, "decay_rate": _DECAY, "epsilon": _EPSILON},
    "adam": {"learning_rate": _RATE, "beta1": _DECAY, "beta2": _DECAY, "epsilon": _EPSILON},
    "adamw": {"learning_rate": _RATE, "beta1": _DECAY, "beta2": _DECAY, "epsilon": _EPSILON,
              "weight_decay": Option(None, float, range="[0, inf)", help="decoupled weight decay")},
}

UPDATE_RULES = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "nesterov": nesterov,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamw": adamw,
}
