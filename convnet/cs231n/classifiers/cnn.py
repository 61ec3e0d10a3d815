"""CS231n's ``cs231n.classifiers.cnn``: ThreeLayerConvNet; like CS231n's, a star import also
brings every layer, fast layer and sandwich function (:mod:`convnet.cs231n.layer_utils`)."""

from convnet.cs231n import layer_utils
from convnet.cs231n.layer_utils import *  # noqa: F403
from convnet.models import ThreeLayerConvNet

__all__ = layer_utils.__all__ + ["ThreeLayerConvNet"]
