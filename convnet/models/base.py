"""What every model shares: parameters, normalisation state, saving and loading.

The CS231n contract: ``model.params`` maps names to arrays, ``model.loss(X)`` returns
class scores and ``model.loss(X, y)`` returns ``(loss, grads)`` with ``grads`` keyed like
``params``. A model's *state* is its parameters plus the batch-norm running statistics,
which live in the ``bn_param`` dicts listed in ``model.bn_params``.
"""

import functools
import inspect

import numpy as np

from convnet.checks import require_float_dtype
from convnet.layers import seed_from_global_state, softmax_loss
from convnet.options import check


def checks_arguments(init):
    """Decorate a model's ``__init__``: its arguments are checked against the class's OPTIONS,
    as a config's model section is (types, ranges, choices; then ``check_options`` for what one
    option alone cannot say), and passed on converted the same way (a tuple as a list, an int
    where a float is declared as the float). One rule for configs and Python calls; errors are
    ConfigError (a ValueError) naming the argument: "FullyConnectedNet argument 'normalization' ...".
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def init_with_checks(self, *args, **kwargs):
        cls = type(self)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        label = f"{cls.__name__} argument"
        declared = {key: cls.OPTIONS[key] for key in bound.arguments if key in cls.OPTIONS}
        for key, option in declared.items():
            value = bound.arguments[key]
            bound.arguments[key] = check(key, list(value) if isinstance(value, tuple) else value, option, label)
        if hasattr(cls, "check_options") and len(declared) == len(cls.OPTIONS):
            cls.check_options({key: bound.arguments[key] for key in declared}, "", label)
        return init(*bound.args, **bound.kwargs)

    return init_with_checks


def keyword_aliases(**aliases):
    """Decorate ``__init__`` to accept older keyword names: ``old=(new, convert)``.

    ``old=value`` is passed on as ``new=convert(value)``; giving both is a TypeError. The
    wrapper keeps the signature of ``__init__`` (``inspect.signature`` follows ``__wrapped__``),
    so what is built from it, such as config validation and the docs, never sees the old names.
    """

    def decorate(init):
        @functools.wraps(init)
        def init_with_aliases(self, *args, **kwargs):
            for old, (new, convert) in aliases.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{type(self).__name__}() got both {old}= and {new}=; {old}= is the older "
                                        f"name of {new}=, pass only {new}=")
                    kwargs[new] = convert(kwargs.pop(old))
            return init(self, *args, **kwargs)

        return init_with_aliases

    return decorate


def regularized_names(params):
    """The one rule for L2 regularisation and weight decay: weight matrices and filters
    (ndim >= 2) are regularised; biases and normalisation scales/shifts are not."""
    return [name for name, value in params.items() if np.ndim(value) >= 2]


#: Test-time augmentations (solver.tta, evaluate --tta): None, or how the logits of variants of each image are averaged.
TTA_MODES = (None, "flip", "flip_translate")


def tta_scores(model, X, tta=None):
    """Class scores (N, K) of ``model.loss`` for images X (N, C, H, W), averaged over test-time augmentations.

    None: the scores of X. 'flip': the mean of the scores of X and of its left-right mirror.
    'flip_translate': 0.5 * flip(X) + 0.5 * the mean of flip() of X shifted by one pixel up-left and by
    one pixel down-right, the border filled by reflection (the one rule; every accuracy check uses it).
    """
    if tta is None:
        return model.loss(X)
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {list(TTA_MODES)}, got {tta!r}")
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"tta={tta!r} needs images X of shape (N, C, H, W), got shape {X.shape}")

    def flip(images):
        return 0.5 * (model.loss(images) + model.loss(np.ascontiguousarray(images[:, :, :, ::-1])))

    scores = flip(X)
    if tta == "flip_translate":
        H, W = X.shape[2:]
        padded = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
        shifted = [np.ascontiguousarray(padded[:, :, :H, :W]), np.ascontiguousarray(padded[:, :, 2:, 2:])]
        scores = 0.5 * scores + 0.5 * (0.5 * (flip(shifted[0]) + flip(shifted[1])))
    return scores


def predict_labels(model, X, batch_size=256, tta=None):
    """Labels (N,) that ``model.loss(X_batch)``'s scores predict for X, batch by batch: all any
    CS231n-style model (only ``params`` and ``loss``) needs in order to be evaluated.
    ``tta``: average the scores over test-time augmentations first (see :func:`tta_scores`)."""
    labels = [np.argmax(tta_scores(model, X[i : i + batch_size], tta), axis=1) for i in range(0, len(X), batch_size)]
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


class Model:
    """Base class: subclasses fill ``params`` and ``bn_params`` and implement :meth:`loss`.

    ``freeze_after`` {parameter name: epoch} says from which epoch a parameter is frozen (0: always);
    ``frozen`` is the set of names frozen now (the Solver sets it at each epoch's start). Models
    whose loss reads ``frozen`` leave those parameters out of ``grads``.
    """

    #: s in the softmax loss's target (1 - s) * onehot + s / C (see convnet.layers.softmax_loss)
    label_smoothing = 0.0

    def __init__(self, reg=0.0, dtype=np.float32, seed=None):
        self.reg = float(reg)
        self.dtype = require_float_dtype("dtype", dtype)
        self.params = {}
        self.bn_params = []
        self.dropout_params = []
        self.freeze_after = {}
        self.frozen = set()
        # One generator for initialisation and, later, for dropout masks: a seed
        # makes the whole model reproducible; without one, np.random's state decides.
        self.seed = seed_from_global_state() if seed is None else seed
        self.rng = np.random.default_rng(self.seed)

    # -- the CS231n interface ------------------------------------------------

    def loss(self, X, y=None):
        """Scores (N, num_classes) when y is None, else (loss, grads)."""
        raise NotImplementedError

    def draw_new_dropout_masks(self):
        """Make every later forward draw new dropout masks from the model's generator.

        A seeded FullyConnectedNet fixes one mask per seed, as CS231n's gradient checks
        need; training wants a new mask each step, so training from a config calls this.
        """
        for dropout_param in self.dropout_params:
            dropout_param.pop("seed", None)

    def set_mode(self, mode):
        """'train' or 'test' for every batch norm and dropout layer."""
        for layer_param in self.bn_params + self.dropout_params:
            layer_param["mode"] = mode

    def data_loss(self, scores, y):
        """Softmax loss (with the model's label_smoothing) plus 0.5 * reg * sum(W^2) over the weights
        named in ``regularized``.

        Returns (loss, dscores); the caller adds ``reg * W`` to each weight's gradient
        with :meth:`add_regularization_gradients`.
        """
        loss, dscores = softmax_loss(scores, y, label_smoothing=self.label_smoothing)
        if self.reg:
            loss += 0.5 * self.reg * sum(float(np.sum(self.params[name] ** 2)) for name in self.regularized())
        return loss, dscores

    def add_regularization_gradients(self, grads):
        if self.reg:
            for name in self.regularized():
                grads[name] += self.reg * self.params[name]
        return grads

    def regularized(self):
        """Names of the parameters under L2 regularisation (and the Solver's weight decay): those of
        :func:`regularized_names` that are not frozen right now (a frozen weight is a constant)."""
        return [name for name in regularized_names(self.params) if name not in self.frozen]

    # -- state -----------------------------------------------------------------

    def state(self):
        """Copies of every parameter and running statistic: {name: array} (see convnet.checkpoint.model_state)."""
        from convnet.checkpoint import model_state

        return model_state(self)

    def load_state(self, state):
        """Restore what :meth:`state` returned; names and shapes must match this model."""
        from convnet.checkpoint import load_model_state

        load_model_state(self, state)

    def save(self, path):
        """Write the state to an .npz file (atomically: temporary file, then rename)."""
        from convnet.checkpoint import save_arrays

        save_arrays(path, self.state())

    def load(self, path):
        """Read a state written by :meth:`save` (or a training checkpoint); a damaged file or one that
        does not fit this model raises CheckpointError naming the file."""
        from convnet.checkpoint import load_weights

        return load_weights(self, path)

    # -- inference -----------------------------------------------------------

    def predict(self, X, batch_size=256, tta=None):
        """Predicted labels (N,) for images X, computed in batches in test mode (tta: see tta_scores)."""
        return predict_labels(self, X, batch_size, tta)

    def num_parameters(self):
        return int(sum(value.size for value in self.params.values()))
