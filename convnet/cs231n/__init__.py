"""CS231n's module paths on top of convnet, so an assignment-2 notebook runs by changing its imports only.

``from cs231n.X import ...`` becomes ``from convnet.cs231n.X import ...`` for X in ``layers``,
``fast_layers``, ``layer_utils``, ``classifiers``, ``classifiers.fc_net``, ``classifiers.cnn``,
``solver``, ``optim``, ``gradient_check`` and ``data_utils``. Each module here only re-exports
convnet's own functions and classes, and a star import brings what CS231n's brings (e.g.
``classifiers.fc_net`` also gives every layer and sandwich function). See docs/cs231n.md for
what differs.
"""
