"""CS231n's ``cs231n.optim``: the update rules ``rule(w, dw, config) -> (next_w, config)``."""

from convnet.optim import adam, rmsprop, sgd, sgd_momentum

__all__ = ["adam", "rmsprop", "sgd", "sgd_momentum"]
