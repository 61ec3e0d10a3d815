"""CS231n's ``cs231n.data_utils``: CIFAR-10 as CS231n returns it (float64; NHWC from the loaders,
NCHW and mean-subtracted from ``get_CIFAR10_data``), read from ``$CONVNET_DATA`` or
``~/.cache/convnet`` (see :mod:`convnet.data`)."""

from convnet.data.cifar10 import load_CIFAR10, load_CIFAR_batch
from convnet.data.splits import get_CIFAR10_data

__all__ = ["get_CIFAR10_data", "load_CIFAR10", "load_CIFAR_batch"]
