"""Communicators: how the Solver's ranks combine their work (data-parallel synchronous SGD).

    mpiexec -n 2 python -m convnet.train experiments/cifar10_convnet.yaml

Two communicators with one interface, so the Solver has one code path:

- :class:`Local`: one process (the default). Every reduction returns its input.
- :class:`MPI`: K processes started by ``mpiexec`` (mpi4py, imported here and only here).

Every rank holds the same model, optimizer state and generator state, so every rank draws
the same permutation and the same augmentation of each *global* batch of B images. Rank r
takes its shard, rows ``shard_bounds(B, K, r)`` (contiguous, sizes differing by at most one;
a rank whose shard is empty contributes zeros), computes the loss and gradients of its
shard, and one in-place Allreduce over one preallocated flat buffer sums

    n_r / B * (grads_r, loss_r)

over the ranks. The model's loss is a mean over its images plus a regularisation term the
same on every rank, so the sum equals the loss and gradients of the whole global batch:
K ranks train the model one process would, up to the order of floating-point additions
(dropout included: :class:`RowsOfTheBatch`; batch norm's per-step statistics stay per rank,
its running statistics are averaged at the end of an epoch and at a stop).
The buffer also carries, per parameter, whether a rank had a gradient for it (a frozen one
has none) and the ranks' stop flags (Ctrl-C, SIGTERM), so every rank sees the same global
loss (divergence is decided together) and stops after the same step.
"""

import contextlib
import os
import warnings
from dataclasses import dataclass

import numpy as np

#: --distributed values: 'auto' uses MPI when an MPI launcher started this process.
MODES = ("auto", "mpi", "off")

#: What launchers set in each process they start: (variable with the number of processes, launcher).
LAUNCH_VARIABLES = (
    ("PMI_SIZE", "MPICH/Intel MPI (PMI)"),
    ("OMPI_COMM_WORLD_SIZE", "Open MPI"),
    ("PMIX_SIZE", "PMIx"),
    ("MPI_LOCALNRANKS", "MPICH/Intel MPI"),
)
#: Variables that say the same without a count.
LAUNCH_MARKERS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID")
#: Where a launcher says which process this is (read before MPI starts, to print an error once).
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


class DistributedError(RuntimeError):
    """MPI was asked for or launched, but cannot be used as it is (one line for the user)."""


def shard_bounds(count, size, rank):
    """(start, stop) of rank ``rank``'s rows among ``count`` rows split over ``size`` ranks.

    Contiguous shards in rank order, the first ``count % size`` ranks one row longer; a
    rank beyond ``count`` gets an empty shard (start == stop).
    """
    base, extra = divmod(count, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class Launch:
    """What the environment says about how this process was started."""

    size: int | None  # processes the launcher started (None: it did not say)
    launcher: str | None  # None: no MPI launcher


def detect_launch(environ=None):
    """The :class:`Launch` an MPI launcher left in ``environ`` (default os.environ)."""
    environ = os.environ if environ is None else environ
    for variable, launcher in LAUNCH_VARIABLES:
        value = environ.get(variable, "")
        if value.isdigit():
            return Launch(int(value), f"{launcher}, {variable}={value}")
    for variable in LAUNCH_MARKERS:
        if variable in environ:
            return Launch(None, f"{variable} is set")
    return Launch(None, None)


def launch_rank(environ=None):
    """This process's rank as the launcher says (0 when none does)."""
    environ = os.environ if environ is None else environ
    for variable in RANK_VARIABLES:
        value = environ.get(variable, "")
        if value.isdigit():
            return int(value)
    return 0


class Local:
    """One process: the shard is the whole batch and every reduction returns its input."""

    rank, size = 0, 1
    local_size = 1  # ranks on this machine (they share its CPUs)
    is_root = True

    def loss_and_grads(self, model, X_batch, y_batch, stop=False):
        """(loss, grads) of the global batch X_batch (N, ...), y_batch (N,); ``stop``: this rank's
        stop flag, combined with the others' for :meth:`stop_after_step`. Here: ``model.loss``."""
        return model.loss(X_batch, y_batch)

    def stop_after_step(self, flag):
        """Whether to stop after this step: ``flag`` (this rank's flag now) here; with MPI,
        whether any rank's flag was set when the step's gradients were combined."""
        return bool(flag)

    def any(self, flag):
        """Whether ``flag`` is true on any rank."""
        return bool(flag)

    def shard(self, count):
        """The slice of ``count`` rows this rank works on."""
        return slice(0, count)

    def sum(self, values):
        """Element-wise sum over the ranks of a float64 vector."""
        return np.asarray(values, dtype=np.float64)

    def mean(self, array):
        """Element-wise mean over the ranks of ``array`` (any shape, its own dtype): ``array`` here."""
        return array

    def end_of_epoch(self, model, lookahead=None):
        """Average the batch-norm running statistics over the ranks (:meth:`average_running_statistics`)
        and check that their parameters agree (DistributedError otherwise); nothing to do here."""

    def average_running_statistics(self, model, lookahead=None):
        """Each rank's batch-norm running statistics (means over its shards) -> their average: the
        model's, and those in ``lookahead``'s average (convnet.callbacks.Lookahead) when given.

        The one place where they are averaged: at the end of an epoch and at a stop, so that a
        checkpoint holds the run's statistics, not rank 0's. The running averages are linear and
        the same on every rank, so averaging at a stop changes only the order of additions.
        """
        for bn_param in getattr(model, "bn_params", None) or []:
            for key in ("running_mean", "running_var"):
                if key in bn_param:
                    bn_param[key] = self.mean(bn_param[key])
        if lookahead is not None:
            lookahead.sync(self)


class MPI(Local):
    """K ranks of ``mpiexec``; see the module docstring. ``comm``: an mpi4py communicator
    (default COMM_WORLD)."""

    def __init__(self, comm=None):
        with warnings.catch_warnings():  # mpi4py's own warning of a foreign mpiexec: communicator() says more
            warnings.simplefilter("ignore", RuntimeWarning)
            from mpi4py import MPI as mpi  # the one import of mpi4py in convnet (it starts MPI)

        self._mpi = mpi
        self.comm = mpi.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        node = self.comm.Split_type(mpi.COMM_TYPE_SHARED)  # the ranks on this machine
        self.local_size = node.Get_size()
        node.Free()
        self._buffer = None  # the flat step buffer and its layout, made on the first step
        self._stopping = False  # whether any rank's stop flag was set at the last step

    # -- one Allreduce per step -------------------------------------------

    def _layout(self, model):
        """(buffer, {name: (start, stop, shape)}): one flat vector in the model's dtype holding
        every parameter's gradient, then one 'present' element per parameter, the loss and the
        stop flag."""
        names = list(model.params)
        dtype = np.result_type(*(np.asarray(value).dtype for value in model.params.values()))
        if self._buffer is not None and self._buffer[1].keys() == set(names) and self._buffer[0].dtype == dtype:
            return self._buffer
        slots, offset = {}, 0
        for name in names:
            shape = np.shape(model.params[name])
            slots[name] = (offset, offset + int(np.prod(shape, dtype=np.int64)), shape)
            offset = slots[name][1]
        buffer = np.zeros(offset + len(names) + 2, dtype=dtype)
        self._buffer = (buffer, slots)
        self.check_in_sync(model)  # before the first step: the ranks must start alike
        return self._buffer

    def loss_and_grads(self, model, X_batch, y_batch, stop=False):
        buffer, slots = self._layout(model)
        total = len(X_batch)
        rows = self.shard(total)
        count = rows.stop - rows.start
        gradients_end = len(buffer) - len(slots) - 2
        present = buffer[gradients_end:-2]
        buffer[:] = 0
        if count:
            with dropout_masks_of_the_batch(model, total, rows):
                loss, grads = model.loss(X_batch[rows], y_batch[rows])
            weight = count / total  # this shard's share of the global batch's mean
            for index, (name, (start, end, _)) in enumerate(slots.items()):
                if name in grads:
                    np.multiply(np.ravel(grads[name]), weight, out=buffer[start:end], casting="unsafe")
                    present[index] = 1
            buffer[-2] = loss * weight
        buffer[-1] = 1 if stop else 0
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        # Views into the buffer: the update rules read them before the next step overwrites it.
        grads = {name: buffer[start:end].reshape(shape) for index, (name, (start, end, shape)) in enumerate(slots.items())
                 if present[index] > 0}
        self._stopping = bool(buffer[-1] > 0)
        return float(buffer[-2]), grads

    def stop_after_step(self, flag):
        return self._stopping

    # -- accuracy checks and the end of an epoch ----------------------------

    def any(self, flag):
        return bool(self.comm.allreduce(1 if flag else 0, op=self._mpi.SUM))

    def shard(self, count):
        return slice(*shard_bounds(count, self.size, self.rank))

    def sum(self, values):
        values = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, values, op=self._mpi.SUM)
        return values

    def mean(self, array):
        total = np.array(array, copy=True, order="C")
        self.comm.Allreduce(self._mpi.IN_PLACE, total, op=self._mpi.SUM)
        return total / self.size

    def end_of_epoch(self, model, lookahead=None):
        self.average_running_statistics(model, lookahead)
        self.check_in_sync(model)
        if getattr(model, "rng", None) is not None:  # a rank with an empty shard drew no dropout masks
            model.rng.bit_generator.state = self.comm.bcast(model.rng.bit_generator.state, root=0)

    def check_in_sync(self, model):
        """DistributedError when the ranks' parameters differ (compared by per-array sums)."""
        # Every rank applied the same reduced gradients to the same parameters; a difference means
        # the ranks were not started alike (another seed or config on one of them).
        digest = np.array([float(np.sum(np.asarray(value, dtype=np.float64))) for value in model.params.values()])
        lowest, highest = digest.copy(), digest.copy()
        self.comm.Allreduce(self._mpi.IN_PLACE, lowest, op=self._mpi.MIN)
        self.comm.Allreduce(self._mpi.IN_PLACE, highest, op=self._mpi.MAX)
        if not np.array_equal(lowest, highest):
            raise DistributedError("the ranks' parameters differ: every rank must run the same config, data and "
                                   "seed (one mpiexec of one command)")

    def abort(self, status):
        """End every rank now (after a failure on this rank alone, which the others would wait for)."""
        self.comm.Abort(status)


class RowsOfTheBatch:
    """Stands for a dropout layer's generator on a rank: draws the masks of the whole global
    batch (``total`` rows) from ``generator`` and returns this rank's ``rows`` of them, so that
    every rank's masks are those one process would draw, and the generators stay equal."""

    def __init__(self, generator, total, rows):
        self.generator, self.total, self.rows = generator, total, rows

    def random(self, shape):
        if not shape or shape[0] != self.rows.stop - self.rows.start:  # not a batch-first draw
            return self.generator.random(shape)
        return self.generator.random((self.total, *shape[1:]))[self.rows]


@contextlib.contextmanager
def dropout_masks_of_the_batch(model, total, rows):
    """Within the block, the model's dropout layers (``model.dropout_params``) draw through
    :class:`RowsOfTheBatch`."""
    layers = [param for param in getattr(model, "dropout_params", None) or [] if param.get("rng") is not None]
    generators = [param["rng"] for param in layers]
    for param, generator in zip(layers, generators):
        param["rng"] = RowsOfTheBatch(generator, total, rows)
    try:
        yield
    finally:
        for param, generator in zip(layers, generators):
            param["rng"] = generator


def communicator(mode="auto", environ=None):
    """The communicator for ``--distributed mode``; DistributedError (one line) when MPI is
    launched or asked for but cannot work: mpi4py missing, or an mpiexec of another MPI
    library than mpi4py's (its processes would each see a world of one and train K copies).
    """
    if mode not in MODES:
        raise DistributedError(f"--distributed must be one of {', '.join(MODES)}, got {mode!r}")
    launch = detect_launch(environ)
    if mode == "off" or (mode == "auto" and launch.launcher is None):
        return Local()
    try:
        import mpi4py  # noqa: F401  - only to say clearly that it is missing
    except ImportError:
        why = f"this process was started by an MPI launcher ({launch.launcher})" if launch.launcher \
            else "--distributed mpi was given"
        raise DistributedError(f"{why} but mpi4py is not installed: pip install 'convnet[mpi]' (or mpi4py built "
                               "against your cluster's MPI), or run without mpiexec") from None
    result = MPI()
    if launch.size is not None and launch.size != result.size:
        raise DistributedError(
            f"the launcher started {launch.size} processes ({launch.launcher}) but MPI sees {result.size}: this "
            f"mpiexec belongs to another MPI library than mpi4py's ({library_version()}); use the mpiexec that "
            f"comes with it: {mpiexec_path()}")
    return result


def library_version():
    """The first line of the MPI library's version string (mpi4py's library)."""
    from mpi4py import MPI as mpi

    return " ".join(mpi.Get_library_version().strip().splitlines()[0].split())


def mpiexec_path():
    """The mpiexec the mpich wheel installed with this Python's scripts (beside the executable,
    the environment's or the user's scripts folder), else the one on PATH."""
    import shutil
    import sys
    import sysconfig
    from pathlib import Path

    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts")),
               Path(sysconfig.get_path("scripts", f"{os.name}_user"))]
    found = next((folder / "mpiexec" for folder in folders if (folder / "mpiexec").is_file()), None)
    return str(found) if found is not None else (shutil.which("mpiexec") or "mpiexec")
