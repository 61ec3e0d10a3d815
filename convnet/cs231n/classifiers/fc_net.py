"""CS231n's ``cs231n.classifiers.fc_net``: TwoLayerNet and FullyConnectedNet; like CS231n's, a
star import also brings every layer and sandwich function (:mod:`convnet.cs231n.layer_utils`)."""

from convnet.cs231n import layer_utils
from convnet.cs231n.layer_utils import *  # noqa: F403
from convnet.models import FullyConnectedNet, TwoLayerNet

__all__ = layer_utils.__all__ + ["FullyConnectedNet", "TwoLayerNet"]
