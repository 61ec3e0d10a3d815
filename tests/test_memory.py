"""convnet.memory: freed large arrays are reused inside reusing_memory(), and only there."""

import numpy as np
import pytest

try:  # numpy >= 2
    from numpy._core.multiarray import get_handler_name
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import get_handler_name

from convnet import memory
from convnet.models import ConvNet
from convnet.solver import Solver

BIG = memory.MIN_BYTES  # bytes of an array the handler keeps


def test_a_freed_large_array_is_the_next_one_of_its_size():
    with memory.reusing_memory():
        first = np.empty(BIG, np.uint8)
        address = first.ctypes.data
        assert get_handler_name(first) == get_handler_name() == "convnet_reusing_allocator"
        del first
        assert memory.kept_bytes() == BIG
        assert np.empty(BIG // 2, np.uint8).ctypes.data != address  # another size: not this block
        second = np.empty(BIG, np.uint8)
        assert second.ctypes.data == address and memory.kept_bytes() == 0
        del second
        small = np.empty(BIG - 1, np.uint8)
        del small
        assert memory.kept_bytes() == BIG, "an array below MIN_BYTES is not kept"
    assert memory.kept_bytes() == 0, "leaving the block frees what it kept"
    assert get_handler_name() == "default_allocator"


def test_zeros_are_zeros_after_a_block_was_reused():
    with memory.reusing_memory():
        ones = np.ones(BIG // 8)
        del ones
        assert not np.zeros(BIG // 8).any()
        reused = np.empty(BIG // 8)
        reused[:] = 3
        assert np.all(reused == 3)


def test_nothing_is_kept_beyond_the_limit_or_after_the_block():
    with memory.reusing_memory(limit=BIG):
        a, b = np.empty(BIG, np.uint8), np.empty(BIG, np.uint8)
        del a, b
        assert memory.kept_bytes() == BIG
        survivor = np.empty(2 * BIG, np.uint8)
    del survivor  # allocated inside, freed after: back to the C library
    assert memory.kept_bytes() == 0
    with memory.reusing_memory(limit=0):
        c = np.empty(BIG, np.uint8)
        del c
        assert memory.kept_bytes() == 0


@pytest.mark.parametrize("limit", [-1, 1.5, True, "1G"])
def test_a_bad_limit_is_named(limit):
    with pytest.raises(ValueError, match=r"reusing_memory: limit must be a number of bytes >= 0, got"):
        with memory.reusing_memory(limit=limit):
            pass


def test_the_solver_trains_inside_it(rng):
    handlers = []
    model = ConvNet([{"type": "conv_bn_relu", "filters": 4}, "pool", "global_avgpool"], input_dim=(3, 8, 8),
                    num_classes=3, seed=0)
    data = {"X_train": rng.standard_normal((16, 3, 8, 8)).astype(np.float32), "y_train": rng.integers(3, size=16)}
    solver = Solver(model, data, batch_size=8, num_epochs=1, verbose=False,
                    callbacks=[lambda event, solver, info: handlers.append((event, get_handler_name()))])
    solver.train()
    inside = {handler for event, handler in handlers if event != "end"}  # 'end' comes after the loop
    assert [event for event, _ in handlers].count("iteration") == 2 and inside == {"convnet_reusing_allocator"}
    assert get_handler_name() == "default_allocator" and memory.kept_bytes() == 0
