"""CS231n's ``cs231n.classifiers``: the assignment-2 models (convnet's own classes)."""

from convnet.models import FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet

__all__ = ["FullyConnectedNet", "ThreeLayerConvNet", "TwoLayerNet"]
