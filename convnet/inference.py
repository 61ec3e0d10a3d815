"""Use a trained model: load it from a run directory or a checkpoint, predict on raw images.

    model = convnet.load_model("runs/quickstart/20261126-101500")     # or .../best.npz
    probabilities = model.predict_proba(images)   # images: uint8 (N, H, W, 3), as image files decode
    model.class_names[probabilities.argmax(axis=1)[0]]

The weights file carries what prediction needs (see :class:`convnet.checkpoint.Inference`):
the model's arguments, the normalisation statistics and the class names, so no training data
and no config.yaml are read. A file written before checkpoints carried them still loads when
its run directory has config.yaml, with a warning saying what was missing: the statistics
are then recomputed from the training data the config names.

Image files are read by :func:`load_image` (Pillow, the ``images`` extra).
"""

import warnings
from pathlib import Path

import numpy as np

from convnet.checkpoint import CheckpointError, Inference, MissingInferenceRecord, load_model_state, read_inference
from convnet.models.base import tta_scores

#: How :func:`load_image` fits an image to the model's input: 'crop' cuts the largest centred
#: region of the model's aspect ratio, then resizes it; 'stretch' resizes the whole image.
RESIZE_MODES = ("crop", "stretch")


class ImageError(ValueError):
    """An image file cannot be used: missing, not an image, truncated or empty. The message names the file."""


def locate(target):
    """The weights file of ``target``: a run directory (its best.npz, else checkpoint.npz) or a .npz file."""
    target = Path(target)
    if target.is_dir():
        for name in ("best.npz", "checkpoint.npz"):
            if (target / name).is_file():
                return target / name
        raise FileNotFoundError(f"no weights in {target} (expected best.npz or checkpoint.npz in a run directory)")
    if not target.is_file():
        raise FileNotFoundError(f"no weights at {target} (give a run directory, or a best.npz or checkpoint.npz)")
    return target


def load_inference(weights, data_root=None):
    """(model state, :class:`Inference`, note) of a weights file.

    ``note`` is None for a self-contained file. For an older one (MissingInferenceRecord) the
    record is rebuilt from the run directory's config.yaml and its training data (``data_root``
    overrides where that lives), and ``note`` says so; without a config.yaml the error is raised.
    """
    try:
        state, inference = read_inference(weights)
        return state, inference, None
    except MissingInferenceRecord as exc:
        config_file = Path(weights).parent / "config.yaml"
        if not config_file.is_file():
            raise MissingInferenceRecord(f"{exc}; and {config_file} is not there to rebuild them from") from None
        missing = str(exc)
    from convnet import experiment  # the training stack, only for files that need their data rebuilt
    from convnet.checkpoint import load_arrays, model_arrays
    from convnet.config import load_config

    config = load_config(config_file, [f"data.root={data_root}"] if data_root else [])
    inference = Inference.from_run(config, experiment.build_data(config))
    state = model_arrays(load_arrays(weights))
    note = (f"{missing}: rebuilt them from {config_file} and the training data it names "
            "(checkpoints written by this convnet carry them)")
    return state, inference, note


def model_from_config(model_config, seed=None):
    """The model a resolved config's ``model`` section describes: its ``type`` built with the other keys.

    Raises KeyError for an unknown type, TypeError/ValueError for arguments it does not take.
    """
    from convnet.models import MODEL_TYPES

    arguments = dict(model_config)
    kind = arguments.pop("type")
    for name in ("input_dim", "hidden_dims"):  # YAML and JSON give lists; the models take tuples
        if isinstance(arguments.get(name), list):
            arguments[name] = tuple(arguments[name])
    return MODEL_TYPES[kind](**arguments, seed=seed)


def build_model(inference, state, where):
    """The model the record describes, with ``state`` loaded; CheckpointError naming ``where`` if they do not fit."""
    from convnet.models import MODEL_TYPES

    kind = inference.config["model"].get("type")
    if kind not in MODEL_TYPES:
        raise CheckpointError(f"{where}: model type {kind!r} is not one this convnet knows ({sorted(MODEL_TYPES)})")
    try:
        model = model_from_config(inference.config["model"], inference.config.get("seed"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: its stored model arguments do not build a {kind} ({exc})") from exc
    try:
        load_model_state(model, state)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    model.set_mode("test")
    return model


class TrainedModel:
    """A trained model with what it needs to predict on raw images.

    ``model``: the convnet model (``model.loss(X)`` gives scores); ``class_names``; ``input_shape``:
    (H, W, C) of the images :meth:`predict_proba` takes; ``normalization``: the statistics applied
    to them first; ``config``: the resolved config of the run; ``weights``: the file it came from.
    """

    def __init__(self, model, inference, weights=None):
        self.model, self.config, self.weights = model, inference.config, weights
        self.normalization = inference.normalization
        self.class_names = list(inference.class_names)
        C, H, W = inference.image_shape
        self.input_shape = (H, W, C)

    def __repr__(self):
        return (f"TrainedModel({type(self.model).__name__}, input {self.input_shape}, "
                f"{len(self.class_names)} classes, from {self.weights})")

    def _check_images(self, images):
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 (raw pixel values 0..255), got {images.dtype}")
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, self.input_shape))}) (N, H, W, C), "
                             f"got {images.shape}; load_image fits an image file to that size")
        return images

    def logits(self, images, batch_size=256, tta=None):
        """Class scores (N, num_classes) in the model's dtype for uint8 images (N, H, W, C).

        ``tta`` (None, 'flip', 'flip_translate'; True means 'flip'): the scores averaged over
        test-time augmentations of the normalised images by :func:`convnet.models.base.tta_scores`,
        the rule training's and evaluate's accuracy checks use.
        """
        from convnet.data import normalize_images

        images = self._check_images(images)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(tta, bool):  # the older predict_proba(..., tta=True) form
            tta = "flip" if tta else None
        scores = []
        for start in range(0, len(images), batch_size):
            X = normalize_images(images[start : start + batch_size].transpose(0, 3, 1, 2), self.normalization,
                                 self.model.dtype)
            scores.append(tta_scores(self.model, X, tta))
        if not scores:
            return np.zeros((0, len(self.class_names)), dtype=self.model.dtype)
        return np.concatenate(scores)

    def predict_proba(self, images, batch_size=256, tta=None):
        """Class probabilities (N, num_classes) for uint8 images (N, H, W, C), rows summing to 1:
        the softmax of :meth:`logits` (``tta`` as there: the logits are averaged, then the softmax)."""
        return softmax(self.logits(images, batch_size, tta))

    def predict(self, images, batch_size=256, tta=None):
        """Predicted class indices (N,) for uint8 images (N, H, W, C)."""
        return np.argmax(self.logits(images, batch_size, tta), axis=1)


def softmax(scores):
    """Row-wise softmax of (N, K) scores, computed stably (the row maximum subtracted first)."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def load_model(path, data_root=None):
    """The trained model at ``path`` (a run directory or a .npz checkpoint) as a :class:`TrainedModel`.

    Raises FileNotFoundError when there are no weights, CheckpointError when the file is damaged
    or lacks what prediction needs (the message names the file and what is missing). An older
    file without the inference record loads through its run's config.yaml and training data
    (``data_root``: where that data lives now), with a warning naming what was missing.
    """
    model, note = open_model(path, data_root)
    if note:
        warnings.warn(note, stacklevel=2)
    return model


def open_model(path, data_root=None):
    """(:class:`TrainedModel`, note) for ``path``, as :func:`load_model` but returning the note
    about an older file (None for a self-contained one) for a command line to print."""
    weights = locate(path)
    state, inference, note = load_inference(weights, data_root)
    return TrainedModel(build_model(inference, state, weights), inference, weights), note


# ----------------------------------------------------------------------
# image files
# ----------------------------------------------------------------------


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ImportError("reading image files needs Pillow: pip install 'convnet[images]'") from None
    return Image, ImageOps


def load_image(path, size, resize="crop"):
    """The image file at ``path`` as uint8 (H, W, 3) RGB, with (H, W) = ``size``.

    PNG, JPEG, BMP (anything Pillow reads). The EXIF orientation is applied; grayscale and palette
    images are converted to RGB; transparent pixels (RGBA, LA, a palette with transparency) are
    composited onto white. ``resize`` (see :data:`RESIZE_MODES`): 'crop' cuts the largest centred
    region with the aspect ratio of ``size`` and resizes it with bilinear filtering (antialiased
    when shrinking); 'stretch' resizes the whole image. An image already of ``size`` is unchanged.
    Raises ImageError naming the file when it is missing, not an image, truncated or empty.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    Image, ImageOps = _pillow()
    path = Path(path)
    height, width = size
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            image = ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a directory, not an image file") from None
    except Image.UnidentifiedImageError:
        empty = path.is_file() and path.stat().st_size == 0
        raise ImageError(f"{path} is {'empty (0 bytes)' if empty else 'not an image file Pillow can read'}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path} cannot be decoded ({exc}); is it truncated or damaged?") from None
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{path} has no pixels ({image.width}x{image.height})")
    image = _to_rgb(image, Image)
    if resize == "crop":
        image = ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
    elif image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _to_rgb(image, Image):
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")
