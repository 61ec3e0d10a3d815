"""Median forward and forward+backward times of convnet's fast layers, its numpy
references and (when installed) PyTorch on the CPU.

    python benchmarks/bench_layers.py                     # float32 and float64, all layers
    python benchmarks/bench_layers.py --dtype float32 --layers conv --repeats 20
    python benchmarks/bench_layers.py --memory            # + peak memory of a large conv fwd+bwd

Each implementation is timed in a worker process of its own, started by this run, and
the convnet and torch workers alternate over --rounds rounds so that slow drifts of the
machine reach both. Separate processes matter: idle OpenMP and OpenBLAS worker threads
spin for a while after each call, and two libraries sharing one process (and 2 cores)
slow each other down by up to 2x, which would make any ratio meaningless. Every library
runs with its own defaults (convnet's are the ones it sets on import), and convnet's layers
allocate inside convnet.memory.reusing_memory(), as the Solver trains (--no-reuse-memory: plain
numpy allocation, whose fresh pages fault on first touch at every call). PyTorch's tensors
are in channels_last memory format by default (its fastest CPU convolutions, oneDNN's;
--no-channels-last for NCHW), as in bench_train and bench_recipe.

Conv rates are GFLOP/s (forward 2*N*F*OH*OW*C*HH*WW flops; fwd+bwd computes dx and dw
too, 3x the forward). Pool and batchnorm rates are GB/s of the least traffic possible
(every input read once, every output written once). The last column is convnet's time
divided by PyTorch's: below 1 means convnet is faster.
"""

import argparse
import json
import os
import statistics
import sys

import numpy as np

import timing

CONV_SHAPES = [(64, 3, 32, 32, 32), (64, 32, 32, 32, 64), (64, 64, 16, 16, 128), (64, 128, 8, 8, 256)]
#: The first convolution of each block of the airbench recipe's network (its 64, 256 and 256
#: filters at 31, 15 and 7 pixels), on a chunk of 128 of its 1024-image batches.
AIRBENCH_CONV_SHAPES = [(128, 24, 31, 31, 64), (128, 64, 15, 15, 256), (128, 256, 7, 7, 256)]
POOL_SHAPES = [(64, 32, 32, 32), (64, 128, 16, 16)]
BN_SHAPES = [(64, 32, 32, 32), (64, 128, 16, 16), (128, 64, 32, 32)]
SHAPES = {"conv": CONV_SHAPES, "airbench": AIRBENCH_CONV_SHAPES, "pool": POOL_SHAPES, "bn": BN_SHAPES}
TITLES = {"conv": "conv 3x3/1 pad 1", "airbench": "conv 3x3/1 pad 1 (airbench)", "pool": "max pool 2x2/2",
          "bn": "spatial batchnorm train"}
#: Kinds timed as convolutions.
CONV_KINDS = ("conv", "airbench")
PHASES = ("fwd", "fwd+bwd")


def describe(kind, shape):
    if kind in CONV_KINDS:
        N, C, H, W, F = shape
        return f"N{N} C{C} {H}x{W} F{F}"
    N, C, H, W = shape
    return f"N{N} C{C} {H}x{W}"


def work(kind, shape, dtype, phase):
    """Flops (conv) or least bytes moved (pool, batchnorm) of one call."""
    if kind in CONV_KINDS:
        N, C, H, W, F = shape
        flops = 2.0 * N * F * H * W * C * 9
        return flops if phase == "fwd" else 3 * flops
    size = np.prod(shape) * np.dtype(dtype).itemsize
    if kind == "pool":  # fwd: read x, write x/4; bwd: read dout (x/4), write dx
        return 1.25 * size if phase == "fwd" else 2.5 * size
    return 2.0 * size if phase == "fwd" else 5.0 * size  # bn bwd: read x, dout; write dx


# ---------------------------------------------------------------------------
# the callables each worker times
# ---------------------------------------------------------------------------


def make_inputs(kind, shape, dtype):
    rng = np.random.default_rng(0)
    if kind in CONV_KINDS:
        N, C, H, W, F = shape
        return {
            "x": rng.standard_normal((N, C, H, W)).astype(dtype),
            "w": (0.1 * rng.standard_normal((F, C, 3, 3))).astype(dtype),
            "b": np.zeros(F, dtype),
            "dout": rng.standard_normal((N, F, H, W)).astype(dtype),
        }
    N, C, H, W = shape
    dout_shape = (N, C, H // 2, W // 2) if kind == "pool" else shape
    return {
        "x": rng.standard_normal(shape).astype(dtype),
        "gamma": np.ones(C, dtype),
        "beta": np.zeros(C, dtype),
        "dout": rng.standard_normal(dout_shape).astype(dtype),
    }


def convnet_callables(kind, a, reference):
    """{phase: callable} for convnet's fast layers, or its numpy references."""
    from convnet import conv_layers as cl

    if kind in CONV_KINDS:
        param = {"stride": 1, "pad": 1}
        fwd, bwd = (cl.conv_forward_naive, cl.conv_backward_naive) if reference else (cl.conv_forward, cl.conv_backward)
        forward = lambda: fwd(a["x"], a["w"], a["b"], param)  # noqa: E731
    elif kind == "pool":
        param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        fwd, bwd = (
            (cl.max_pool_forward_naive, cl.max_pool_backward_naive) if reference
            else (cl.max_pool_forward, cl.max_pool_backward)
        )
        forward = lambda: fwd(a["x"], param)  # noqa: E731
    else:
        bn_param = {"mode": "train"}
        fwd, bwd = (
            (cl.spatial_batchnorm_forward_reference, cl.spatial_batchnorm_backward_reference) if reference
            else (cl.spatial_batchnorm_forward, cl.spatial_batchnorm_backward)
        )
        forward = lambda: fwd(a["x"], a["gamma"], a["beta"], bn_param)  # noqa: E731
    return {"fwd": forward, "fwd+bwd": lambda: bwd(a["dout"], forward()[1])}


def torch_callables(kind, a, channels_last):
    """{phase: callable} for the same layer in PyTorch (inputs require grad, as in training); its 4-d
    tensors in channels_last memory format when ``channels_last``."""
    import torch
    import torch.nn.functional as tf

    def tensor(array):
        t = torch.from_numpy(array.copy())
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    x = tensor(a["x"]).requires_grad_()
    dout = tensor(a["dout"])
    if kind in CONV_KINDS:
        w = tensor(a["w"]).requires_grad_()
        b = tensor(a["b"]).requires_grad_()
        layer = lambda: tf.conv2d(x, w, b, stride=1, padding=1)  # noqa: E731
    elif kind == "pool":
        layer = lambda: tf.max_pool2d(x, 2, 2)  # noqa: E731
    else:
        gamma = tensor(a["gamma"]).requires_grad_()
        beta = tensor(a["beta"]).requires_grad_()
        running_mean, running_var = torch.zeros_like(gamma), torch.ones_like(gamma)
        layer = lambda: tf.batch_norm(x, running_mean, running_var, gamma, beta, training=True)  # noqa: E731

    def forward():
        with torch.no_grad():
            layer()

    return {"fwd": forward, "fwd+bwd": lambda: layer().backward(dout)}


def run_worker(args):
    """Time one implementation (args.worker) on every case."""
    impl = args.worker
    if impl == "torch":
        import torch  # before convnet, so torch's OpenMP keeps its own defaults

        torch.set_num_threads(args.threads)
    import convnet

    convnet.set_num_threads(args.threads)
    with timing.convnet_memory(args.reuse_memory and impl != "torch"):  # PyTorch keeps its own allocator
        time_cases(args, impl)
    return 0


def time_cases(args, impl):
    """Print one JSON line per case and phase: the seconds of args.repeats calls."""
    for dtype in args.dtype.split(","):
        for kind in args.layers.split(","):
            for shape in SHAPES[kind]:
                a = make_inputs(kind, shape, dtype)
                if impl == "torch":
                    fns = torch_callables(kind, a, args.channels_last)
                else:
                    fns = convnet_callables(kind, a, reference=impl == "reference")
                # The naive convolution takes seconds per call: time it fewer times.
                repeats = max(1, args.repeats // 5) if impl == "reference" and kind in CONV_KINDS else args.repeats
                for phase in PHASES:
                    times = timing.time_calls(fns[phase], repeats, warmup=1 if impl == "reference" else 2)
                    print(json.dumps({"key": [kind, list(shape), dtype, phase], "times": times}), flush=True)


# ---------------------------------------------------------------------------
# the parent: start workers, merge, report
# ---------------------------------------------------------------------------


def run_worker_process(impl, args, repeats):
    """{key: [seconds]} from one worker process timing ``impl``."""
    records = timing.run_worker(__file__, ["--worker", impl, "--dtype", args.dtype, "--layers", args.layers,
                                           "--repeats", str(repeats), "--threads", str(args.threads),
                                           "--channels-last" if args.channels_last else "--no-channels-last",
                                           "--reuse-memory" if args.reuse_memory else "--no-reuse-memory"])
    return {tuple(json.dumps(k) for k in record["key"]): record["times"] for record in records}


def conv_peak_memory(shape=(256, 64, 32, 32, 64), dtype=np.float32):
    """(peak bytes during conv fwd+bwd, bytes of the arrays the layer must hold)."""
    import tracemalloc

    from convnet import conv_layers as cl

    N, C, H, W, F = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, 3, 3)).astype(dtype)
    b = np.zeros(F, dtype)
    dout = rng.standard_normal((N, F, H, W)).astype(dtype)
    cl.clear_workspace()
    tracemalloc.start()  # numpy reports its array buffers to tracemalloc
    out, cache = cl.conv_forward(x, w, b, {"stride": 1, "pad": 1})
    dx, dw, db = cl.conv_backward(dout, cache)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    already_held = x.nbytes + w.nbytes + b.nbytes + dout.nbytes
    must_hold = already_held + out.nbytes + dx.nbytes + dw.nbytes + db.nbytes
    return already_held + peak, must_hold


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32,float64", help="comma-separated dtypes (default: both)")
    parser.add_argument("--layers", default="conv,airbench,pool,bn",
                        help="comma-separated subset of conv,airbench,pool,bn (airbench: the recipe's conv shapes)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement, over all rounds")
    parser.add_argument("--rounds", type=int, default=2, help="alternating worker rounds for convnet and torch")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every library")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory of a large conv fwd+bwd")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="PyTorch's tensors in channels_last memory format (default: on)")
    parser.add_argument("--reuse-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="convnet's calls inside convnet.memory.reusing_memory(), as the Solver's steps (default: on)")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) numpy references")
    parser.add_argument("--worker", choices=["convnet", "reference", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)

    import convnet

    torch_version = None if args.no_torch else timing.torch_version()
    layout = "channels_last" if args.channels_last else "NCHW"
    print(f"convnet {convnet.__version__}, numpy {np.__version__}, torch {torch_version or 'not measured'} ({layout}); "
          f"threads {args.threads} of {os.cpu_count()} cores ({timing.cpu_model()}); "
          f"{args.repeats} timed calls per cell (median); convnet's arrays "
          f"{'reused (reusing_memory)' if args.reuse_memory else 'freshly allocated'}\n")
    results = {}
    per_round = max(1, args.repeats // args.rounds)
    for _ in range(args.rounds):  # alternate the fast implementations round by round
        for impl in ["convnet"] + (["torch"] if torch_version else []):
            for key, times in run_worker_process(impl, args, per_round).items():
                results.setdefault(impl, {}).setdefault(key, []).extend(times)
    if not args.no_reference:
        results["reference"] = run_worker_process("reference", args, args.repeats)

    print("| layer | shape | dtype | pass | convnet ms | convnet rate | reference ms | convnet speed-up "
          "| torch ms | torch rate | convnet / torch time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, times in results["convnet"].items():
        kind, shape, dtype, phase = (json.loads(k) for k in key)
        fast = statistics.median(times)
        amount = work(kind, tuple(shape), dtype, phase)
        unit = "GFLOP/s" if kind in CONV_KINDS else "GB/s"
        cells = [TITLES[kind], describe(kind, shape), dtype, phase, f"{fast * 1e3:.2f}", f"{amount / fast / 1e9:.1f} {unit}"]
        if "reference" in results:
            ref = statistics.median(results["reference"][key])
            cells += [f"{ref * 1e3:.1f}", f"{ref / fast:.1f}x"]
        else:
            cells += ["-", "-"]
        if "torch" in results:
            theirs = statistics.median(results["torch"][key])
            cells += [f"{theirs * 1e3:.2f}", f"{amount / theirs / 1e9:.1f} {unit}", f"{fast / theirs:.2f}"]
        else:
            cells += ["-", "-", "-"]
        print("| " + " | ".join(cells) + " |", flush=True)

    if args.memory:
        peak, must_hold = conv_peak_memory()
        print(f"\nconv fwd+bwd (N256 C64 32x32 F64 3x3 pad 1, float32): peak {peak / 2**20:.0f} MiB, "
              f"arrays the layer must hold {must_hold / 2**20:.0f} MiB, ratio {peak / must_hold:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
