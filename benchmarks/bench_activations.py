"""Median times of the batch norm + activation stage of a conv block, fused and unfused, on
the fast path: what the fused BN + GELU kernel saves over BN followed by the GELU kernel,
and what GELU costs next to ReLU.

    python benchmarks/bench_activations.py                  # float32, the default shapes
    python benchmarks/bench_activations.py --repeats 30 --shape 256,64,32,32

All variants are convnet's own kernels, so they share one process; they are timed in
interleaved rounds (each round times every variant once per repeat) so that slow drifts of
a shared machine reach them all alike. Ratios are same-run medians. The numpy GELU reference
(math.erf per element) is timed on a 1/64 slice only and scaled: it is there to show why the
kernel exists, not to be compared closely.
"""

import argparse
import statistics
import sys

import numpy as np

import timing


def variants(x, gamma, beta, dout):
    """{name: callable running forward + backward of one variant}."""
    from convnet import conv_layers as cl
    from convnet import layers

    def fused(forward, backward):
        def run():
            out, cache = forward(x, gamma, beta, {"mode": "train"})
            backward(dout, cache)
        return run

    def bn_then_gelu():
        normalized, bn_cache = cl.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
        out, gelu_cache = layers.gelu_forward_fast(normalized)
        cl.spatial_batchnorm_backward(layers.gelu_backward_fast(dout, gelu_cache), bn_cache)

    return {
        "bn + relu (fused)": fused(cl.spatial_batchnorm_relu_forward, cl.spatial_batchnorm_relu_backward),
        "bn + gelu (fused)": fused(cl.spatial_batchnorm_gelu_forward, cl.spatial_batchnorm_gelu_backward),
        "bn, then gelu kernel": bn_then_gelu,
        "gelu kernel alone": lambda: layers.gelu_backward_fast(dout, layers.gelu_forward_fast(x)[1]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="128,64,32,32", help="N,C,H,W of the activations")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per variant")
    args = parser.parse_args(argv)

    import convnet
    from convnet import layers

    shape = tuple(int(v) for v in args.shape.split(","))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(args.dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(args.dtype), rng.standard_normal(shape[1]).astype(args.dtype)
    dout = rng.standard_normal(shape).astype(args.dtype)
    runs = variants(x, gamma, beta, dout)
    times = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm up: workspaces, page faults
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].extend(timing.time_calls(run, 1, 0))
    piece = x.reshape(-1)[: x.size // 64]
    reference = timing.time_calls(lambda: layers.gelu_backward(piece, layers.gelu_forward(piece)[1]), 3, 1)

    print(f"convnet {convnet.__version__}, numpy {np.__version__}, {convnet.get_num_threads()} threads, "
          f"CPU {timing.cpu_model()}; {args.dtype} {shape}, fwd+bwd, median of {args.repeats}\n")
    base = statistics.median(times["bn + relu (fused)"])
    print("| variant | ms | / bn + relu (fused) |")
    print("|---|---|---|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {name} | {median * 1e3:.2f} | {median / base:.2f} |")
    scaled = 64 * statistics.median(reference)
    print(f"| gelu numpy reference (scaled from 1/64) | {scaled * 1e3:.0f} | {scaled / base:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
