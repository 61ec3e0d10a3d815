"""CS231n's ``cs231n.solver``: convnet's :class:`~convnet.solver.Solver`."""

from convnet.solver import Solver

__all__ = ["Solver"]
