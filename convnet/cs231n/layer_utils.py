"""CS231n's ``cs231n.layer_utils``: the sandwich layers; like CS231n's, a star import also
brings every layer of :mod:`convnet.cs231n.layers` and :mod:`convnet.cs231n.fast_layers`."""

from convnet.cs231n import fast_layers, layers
from convnet.cs231n.fast_layers import *  # noqa: F403
from convnet.cs231n.layers import *  # noqa: F403
from convnet import layer_utils as _sandwiches
from convnet.layer_utils import *  # noqa: F403

__all__ = layers.__all__ + fast_layers.__all__ + _sandwiches.__all__
