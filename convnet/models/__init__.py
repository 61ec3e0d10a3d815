"""Models with the CS231n interface: ``params``, ``loss(X, y=None)``."""

from convnet.models.base import Model
from convnet.models.blocks import BLOCKS
from convnet.models.cnn import ThreeLayerConvNet
from convnet.models.conv_net import ConvNet
from convnet.models.fc_net import FullyConnectedNet, TwoLayerNet

MODEL_TYPES = {
    "TwoLayerNet": TwoLayerNet,
    "FullyConnectedNet": FullyConnectedNet,
    "ThreeLayerConvNet": ThreeLayerConvNet,
    "ConvNet": ConvNet,
}

__all__ = ["BLOCKS", "MODEL_TYPES", "ConvNet", "FullyConnectedNet", "Model", "ThreeLayerConvNet", "TwoLayerNet"]
