"""The Winograd convolution's settings, measured: task size, tile size, and where it beats im2col.

    python benchmarks/bench_winograd.py                  # batch 128, 2 threads (all cores)
    python benchmarks/bench_winograd.py --threads 1 --batch-size 64

For each 3x3 stride-1 layer shape of the cifar10_convnet and cifar10_airbench networks, the
median wall time of conv_forward + conv_backward (dx and dw) with F(4x4, 3x3) tiles at several
WINOGRAD_TASK_TILES, and with F(2x2, 3x3) tiles at the default task size, as effective GFLOP/s
(3 x 2*N*F*OH*OW*C*9 flops over the time: the rate a direct convolution would need). Then, for
shapes near the selection rule's edges (few channels, a 3x3 output), im2col against Winograd.
convnet alone runs in this process, so there are no worker processes (benchmarks/timing.py).
"""

import argparse
import statistics
import sys

import numpy as np

import timing

#: (C, size, F): the 3x3 stride-1 layers of the two networks (pad 1, so outputs are size x size).
NETWORK_SHAPES = [(24, 31, 64), (64, 15, 64), (64, 15, 256), (256, 7, 256), (32, 32, 32), (64, 16, 64), (128, 8, 128)]
#: Near the edges of the rule: a 3x3 output, and C * F below or at WINOGRAD_MIN_CHANNELS.
EDGE_SHAPES = [(256, 3, 256), (16, 32, 32), (32, 16, 16), (24, 31, 24), (3, 32, 32)]
TASK_TILES = (16, 32, 64, 128, 256)


def layer_arrays(batch, C, size, F, rng):
    x = rng.standard_normal((batch, C, size, size), dtype=np.float32)
    w = rng.standard_normal((F, C, 3, 3), dtype=np.float32) / np.float32(np.sqrt(9 * C))
    return x, w, np.zeros(F, np.float32)


def median_seconds(x, w, b, repeats):
    """Median seconds of conv_forward + conv_backward (dx and dw), after one untimed call."""
    from convnet import conv_layers as cl

    def call():
        out, cache = cl.conv_forward(x, w, b, {"stride": 1, "pad": 1})
        cl.conv_backward(out, cache)

    return statistics.median(timing.time_calls(call, repeats, warmup=1))


def restore(module, settings):
    """Set each module-level setting back to its value in ``settings`` ({name: value})."""
    for name, value in settings.items():
        setattr(module, name, value)


def gflops(x, w, seconds):
    N, C, H, W = x.shape
    return 3 * 2 * N * w.shape[0] * H * W * C * 9 / seconds / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128, help="images per call (default 128)")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: convnet's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell (median)")
    args = parser.parse_args(argv)

    import convnet
    from convnet import conv_layers as cl

    if args.threads:
        convnet.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    defaults = {name: getattr(cl, name) for name in ("WINOGRAD_TILES", "WINOGRAD_TASK_TILES", "WINOGRAD_TASK_BYTES",
                                                     "WINOGRAD_MIN_CHANNELS", "WINOGRAD_MIN_OUTPUT")}
    print(f"convnet {convnet.__version__}, numpy {np.__version__}; threads {convnet.get_num_threads()} "
          f"({timing.cpu_model()}); batch {args.batch_size} float32, median of {args.repeats}; defaults {defaults}\n")

    print("conv fwd+bwd, effective GFLOP/s: F(4x4) by WINOGRAD_TASK_TILES (task bytes 0), and F(2x2) at the default")
    print("| layer | " + " | ".join(f"m=4, {t} tiles" for t in TASK_TILES) + " | m=2, default |")
    print("|---|" + "---|" * (len(TASK_TILES) + 1))
    for C, size, F in NETWORK_SHAPES:
        x, w, b = layer_arrays(args.batch_size, C, size, F, rng)
        cells = []
        cl.WINOGRAD_TILES, cl.WINOGRAD_TASK_BYTES = (4,), 0
        for tiles in TASK_TILES:
            cl.WINOGRAD_TASK_TILES = tiles
            cells.append(f"{gflops(x, w, median_seconds(x, w, b, args.repeats)):.0f}")
        restore(cl, defaults)
        cl.WINOGRAD_TILES = (2,)
        cells.append(f"{gflops(x, w, median_seconds(x, w, b, args.repeats)):.0f}")
        restore(cl, defaults)
        print(f"| C{C} {size}x{size} F{F} | " + " | ".join(cells) + " |", flush=True)

    print("\nnear the selection rule's edges, effective GFLOP/s (default task size)")
    print("| layer | C*F | im2col | Winograd (tile m) | chosen by the rule |")
    print("|---|---|---|---|---|")
    for C, size, F in EDGE_SHAPES:
        x, w, b = layer_arrays(args.batch_size, C, size, F, rng)
        chosen = "Winograd" if cl._winograd_suits(x, w, 1, 1) else "im2col"
        cl.WINOGRAD_MIN_CHANNELS = float("inf")
        im2col = gflops(x, w, median_seconds(x, w, b, args.repeats))
        cl.WINOGRAD_MIN_CHANNELS, cl.WINOGRAD_MIN_OUTPUT = 1, 1
        winograd = gflops(x, w, median_seconds(x, w, b, args.repeats))
        restore(cl, defaults)
        print(f"| C{C} {size}x{size} F{F} | {C * F} | {im2col:.0f} | {winograd:.0f} (m={cl._winograd_tile(size, size)}) "
              f"| {chosen} |", flush=True)
    print(f"\ncommand: python benchmarks/bench_winograd.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
