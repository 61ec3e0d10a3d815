"""Images per second of one training step (forward + backward + parameter update) of a
ConvNet, convnet against the same network in PyTorch on the CPU (when installed).

    python benchmarks/bench_train.py                          # the cifar10_convnet model, batch 128
    python benchmarks/bench_train.py --batch-size 64 --optimizer adam --threads 1
    python benchmarks/bench_train.py --config experiments/cifar10_convnet.yaml --profile

The network is the block list of ConvNet (default: the model of the cifar10_convnet
experiment; --config reads `model: {type: ConvNet, layers: [...]}` from a YAML
experiment file) on (3, 32, 32) float32 images with 10 classes. The PyTorch twin is
built stage by stage from what the block registry built (twin_layers), and starts from
convnet's initial parameters. Before timing, --check (on by default, a few seconds) verifies
that the twin is the same network: equal train-mode scores, loss and gradients on a
small batch, and equal parameters after one SGD-with-momentum step; it stops the run
(exit status 1) if they differ.

A step is, for convnet, `loss, grads = model.loss(X, y)` then the update rule of
convnet.optim for every parameter (what Solver does); for PyTorch, zero_grad, forward,
cross_entropy, backward, optimizer.step. Every step trains on the same fixed random
batch; 3 warm-up steps precede the timed ones.

Each implementation is timed in a worker process of its own, and the workers alternate
over --rounds rounds so that slow drifts of the machine reach all of them (see
benchmarks/timing.py for why processes). Every library runs with its own defaults
(convnet's are the ones it sets on import). Reported: the median milliseconds per step,
images/s, and convnet's images/s divided by PyTorch's. Measured in the same run:

* the machine's float32 GEMM peak (numpy's 2048x2048 matmul at --threads threads), and
  each library's effective GFLOP/s in the step as a fraction of it (the step's flops are
  3x the forward flops of its convolutions and affine layers);
* --import-order (default on): convnet's step when convnet is imported before numpy, next
  to the ordinary worker, which imports numpy first; the two must run at the same speed;
* --scaling (default on): both libraries with 1 thread, for the speed-up 1 -> --threads.

--profile adds where convnet's step time goes, per block type, forward and backward apart.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from collections import defaultdict

import numpy as np

import timing
from torch_twin import (build_torch_net, copy_parameters, forward_flops, freeze_frozen, leaf_blocks, pair_parameters,
                        torch_arrays)

#: The model of the cifar10_convnet experiment.
DEFAULT_LAYERS = [
    {"type": "conv_bn_relu", "filters": 32}, {"type": "conv_bn_relu", "filters": 32}, "pool",
    {"type": "conv_bn_relu", "filters": 64}, {"type": "conv_bn_relu", "filters": 64}, "pool",
    {"type": "conv_bn_relu", "filters": 128}, {"type": "conv_bn_relu", "filters": 128}, "pool",
    "global_avgpool",
]
INPUT_DIM = (3, 32, 32)
NUM_CLASSES = 10
#: The ConvNet options of the head that the twin follows (convnet.models.ConvNet.OPTIONS).
HEAD_OPTIONS = ("head_bias", "head_scale", "head_init")
DTYPE = np.float32
#: convnet's default learning rates (convnet.optim.RULES) of the two rules offered here; convnet is
#: imported only after timing, so they are written out (tests/test_blocks.py checks them).
LEARNING_RATES = {"sgd_momentum": 1e-2, "adam": 1e-3}
WARMUP_STEPS = 3
CHECK_BATCH = 16
# The check's update rule. Always SGD: its step is linear in the gradient, so gradients
# at rounding level (a unit dead for all but one image, then batch norm) give steps at
# rounding level. Adam's first step is lr * sign(grad) and would turn them into +-lr.
CHECK_OPTIMIZER = "sgd_momentum"
# Check tolerances (float32), each max |difference| / max |value|, per parameter for the
# gradients and the parameters after the step (the worst parameter is reported). A step
# moves a weight by ~1e-3 of its size, so the gradient check is the one that sees a wrong
# layer; the parameter check sees a wrong update rule (and, for parameters that start at
# zero such as batch-norm betas, the gradient again).
SCORES_RTOL, LOSS_RTOL, GRADS_RTOL, PARAMS_RTOL = 1e-4, 1e-4, 1e-3, 1e-4


# ---------------------------------------------------------------------------
# the network, the batch and convnet's step
# ---------------------------------------------------------------------------


def load_model_options(config_path):
    """{'layers', 'input_dim', 'num_classes', head options} of the ConvNet to benchmark.

    Without a config: the defaults above. With one: its `model:` section, which must be
    of type ConvNet; layers, input_dim, num_classes and the head options are taken from it when
    present (layers null or absent means ConvNet's own default block list). The loss options
    (reg, label_smoothing) are left out: the twin's step is plain cross-entropy.
    """
    options = {"layers": DEFAULT_LAYERS, "input_dim": INPUT_DIM, "num_classes": NUM_CLASSES}
    if config_path is None:
        return options
    import yaml

    with open(config_path) as f:
        config = yaml.safe_load(f) or {}
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or model.get("type", "ConvNet") != "ConvNet":
        raise SystemExit(f"{config_path}: expected a `model:` section of type ConvNet, got {model!r}")
    options["layers"] = model.get("layers")
    for key in ("input_dim", "num_classes"):
        if model.get(key) is not None:
            options[key] = tuple(model[key]) if key == "input_dim" else int(model[key])
    options.update({key: model[key] for key in HEAD_OPTIONS if model.get(key) is not None})
    return options


def build_convnet(args):
    """The convnet model, seeded so that every worker starts from the same parameters."""
    from convnet.models import ConvNet

    model = ConvNet(**load_model_options(args.config), dtype=DTYPE, seed=0)
    # Data-dependent filters (a whitening block) from the benchmark's own batch, the same in every worker.
    X, _ = make_batch(CHECK_BATCH, model.input_dim, count_classes(model))
    model.initialize_from_data(X)
    return model


def count_classes(model):
    return model.params["fc_out.W"].shape[1]  # the final affine layer ConvNet appends


def make_batch(batch_size, input_dim, num_classes):
    """The fixed batch: X (N, C, H, W) standard normal float32, y (N,) int64 labels."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch_size, *input_dim)).astype(DTYPE)
    y = rng.integers(0, num_classes, size=batch_size)
    return X, y


class ConvnetTrainer:
    """One training step of a convnet model, as convnet.solver.Solver takes it."""

    def __init__(self, model, optimizer, learning_rate):
        from convnet import optim

        self.model = model
        self.rule = optim.UPDATE_RULES[optimizer]
        extra = {"momentum": 0.9} if optimizer == "sgd_momentum" else {}
        self.configs = {name: {"learning_rate": learning_rate, **extra} for name in model.params}

    def step(self, X, y):
        """Forward, backward and update on (X, y); returns the loss before the update."""
        loss, grads = self.model.loss(X, y)
        self.update(grads)
        return loss

    def update(self, grads):
        for name, w in self.model.params.items():
            if name in grads:  # a frozen parameter (model.frozen) has no gradient and no update
                self.model.params[name], self.configs[name] = self.rule(w, grads[name], self.configs[name])


def step_memory(args):
    """Where convnet's timed steps allocate: reused, as the Solver trains, unless --no-reuse-memory."""
    return timing.convnet_memory(args.reuse_memory)


def step_flops(model, batch_size):
    """Flops of one training step: 3x the forward flops (the forward product, and the two
    products of its backward pass) of every convolution and affine layer."""
    return 3 * batch_size * forward_flops(model)


class TorchTrainer:
    """One training step of the torch twin."""

    def __init__(self, net, optimizer, learning_rate):
        import torch

        self.net = net
        if optimizer == "sgd_momentum":
            self.optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate, momentum=0.9)
        else:
            self.optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)

    def step(self, X, y):
        """X, y: torch tensors. Returns the loss before the update (float)."""
        import torch.nn.functional as F

        self.net.train()
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.net(X), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


# ---------------------------------------------------------------------------
# workers: each prints JSON lines
# ---------------------------------------------------------------------------


def emit(**record):
    print(json.dumps(record), flush=True)


def import_libraries(args, with_torch):
    """Import torch (first, so its OpenMP keeps its defaults) and convnet; set thread counts."""
    if with_torch:
        import torch

        torch.set_num_threads(args.threads)
    import convnet

    convnet.set_num_threads(args.threads)


def learning_rate(args):
    return LEARNING_RATES[args.optimizer] if args.learning_rate is None else args.learning_rate


def convnet_im2col_worker(args):
    """convnet_worker with every convolution on the im2col + GEMM tiles (no Winograd)."""
    import_libraries(args, with_torch=False)
    from convnet import conv_layers

    conv_layers.WINOGRAD_MIN_CHANNELS = float("inf")
    return convnet_worker(args)


def convnet_worker(args):
    """Time args.repeats convnet steps; emit the machine info and the step times."""
    import_libraries(args, with_torch=False)
    import convnet
    from threadpoolctl import threadpool_info

    model = build_convnet(args)
    X, y = make_batch(args.batch_size, model.input_dim, count_classes(model))
    trainer = ConvnetTrainer(model, args.optimizer, learning_rate(args))
    with step_memory(args):
        times = timing.time_calls(lambda: trainer.step(X, y), args.repeats, WARMUP_STEPS)
    blas = [f"{lib['internal_api']} {lib['version']}" for lib in threadpool_info() if lib["user_api"] == "blas"]
    from convnet._kernels.cpu import kernel_isa

    emit(info={"convnet": convnet.__version__, "kernels": kernel_isa(), "numpy": np.__version__,
               "blas": ", ".join(blas) or "unknown",
               "parameters": model.num_parameters(), "network": describe_spec(model.spec, count_classes(model)),
               "flops": step_flops(model, args.batch_size)})
    emit(times=times)


#: The matrix size of the GEMM-peak measurement (float32, square).
PEAK_SIZE = 2048


def peak_worker(args):
    """Emit the seconds of args.repeats numpy float32 PEAK_SIZE x PEAK_SIZE products at args.threads threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((PEAK_SIZE, PEAK_SIZE)).astype(np.float32) for _ in range(2))
    out = np.empty_like(a)
    with threadpool_limits(args.threads, user_api="blas"):
        emit(times=timing.time_calls(lambda: np.matmul(a, b, out=out), args.repeats, 2))


def torch_worker(args):
    """Time args.repeats steps of the torch twin (started from convnet's parameters)."""
    import_libraries(args, with_torch=True)
    import torch

    model = build_convnet(args)
    net = build_torch_net(model)
    copy_parameters(model, pair_parameters(model, net))
    X, y = make_batch(args.batch_size, model.input_dim, count_classes(model))
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    if args.channels_last:  # the layout oneDNN's CPU convolutions are fastest in
        net, X = net.to(memory_format=torch.channels_last), X.contiguous(memory_format=torch.channels_last)
    trainer = TorchTrainer(net, args.optimizer, learning_rate(args))
    emit(times=timing.time_calls(lambda: trainer.step(X, y), args.repeats, WARMUP_STEPS))


def check_worker(args):
    """Emit {'check': ...}: do convnet and the twin give the same scores, loss and update?

    One CHECK_OPTIMIZER step on CHECK_BATCH images in train mode. Dropout masks cannot
    match between libraries, so dropout is switched off (keep 1) in both for the check.
    """
    import_libraries(args, with_torch=True)
    import torch

    model = build_convnet(args)
    classes = count_classes(model)
    net = build_torch_net(model)
    pairs = pair_parameters(model, net)
    copy_parameters(model, pairs)
    freeze_frozen(model, pairs)
    for param in model.dropout_params:
        param["p"] = 1.0
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    X, y = make_batch(CHECK_BATCH, model.input_dim, classes)

    model.set_mode("train")  # scores with batch statistics, as in training
    ours, _ = model.network.forward(model.params, X)
    with torch.no_grad():
        theirs = net.train()(torch.from_numpy(X)).numpy()

    lr = LEARNING_RATES[CHECK_OPTIMIZER]
    loss_ours, grads = model.loss(X, y)
    ConvnetTrainer(model, CHECK_OPTIMIZER, lr).update(grads)
    loss_theirs = TorchTrainer(net, CHECK_OPTIMIZER, lr).step(torch.from_numpy(X), torch.from_numpy(y))

    checks = [["scores", relative_error(ours, theirs), SCORES_RTOL, ""],
              ["loss", relative_error(loss_ours, loss_theirs), LOSS_RTOL, ""],
              ["gradients", *worst_relative_error(grads, torch_arrays(pairs, grad=True), GRADS_RTOL)],
              ["parameters after the step", *worst_relative_error(model.params, torch_arrays(pairs), PARAMS_RTOL)]]
    emit(check={"items": checks, "losses": [loss_ours, loss_theirs], "dropout_off": bool(model.dropout_params)})


def relative_error(ours, theirs):
    """max |ours - theirs| / max |theirs| (0 where both are all zero)."""
    scale = float(np.max(np.abs(theirs)))
    difference = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
    return difference / scale if scale else difference


def worst_relative_error(ours, theirs, tolerance):
    """[error, tolerance, name] of the parameter whose arrays differ most (relative_error)."""
    errors = {name: relative_error(ours[name], theirs[name]) for name in ours}
    worst = max(errors, key=errors.get)
    return [errors[worst], tolerance, worst]


def profile_worker(args):
    """Emit where convnet's step time goes: seconds per (part, phase), summed over the steps.

    Every leaf block's forward and backward are wrapped with timers (per instance), as are
    the softmax loss and the parameter update; what the timers miss (Python glue, the
    residual sums) is the step's remainder.
    """
    import_libraries(args, with_torch=False)
    model = build_convnet(args)
    X, y = make_batch(args.batch_size, model.input_dim, count_classes(model))
    trainer = ConvnetTrainer(model, args.optimizer, learning_rate(args))
    by_type, by_block = defaultdict(float), defaultdict(float)
    for index, block in enumerate(leaf_blocks(model.network)):
        kind, where = block_labels(block, model.params)
        for phase in ("forward", "backward"):
            keys = [(by_type, (kind, phase)), (by_block, (f"{index:2d} {kind} {where}", phase))]
            setattr(block, phase, timed(getattr(block, phase), keys))
    model.data_loss = timed(model.data_loss, [(by_type, ("softmax loss", "forward"))])
    trainer.update = timed(trainer.update, [(by_type, ("parameter update", "-"))])

    with step_memory(args):
        timing.time_calls(lambda: trainer.step(X, y), 0, WARMUP_STEPS)
        by_type.clear()  # keep only the timed steps
        by_block.clear()
        steps = timing.time_calls(lambda: trainer.step(X, y), args.repeats, 0)
    emit(profile={"steps": steps, "by_type": [[*k, v] for k, v in by_type.items()],
                  "by_block": [[*k, v] for k, v in by_block.items()]})


def timed(fn, keys):
    """fn, adding its run time in seconds to totals[key] for each (totals, key) in keys."""

    def wrapper(*a, **kw):
        start = time.perf_counter()
        result = fn(*a, **kw)
        seconds = time.perf_counter() - start
        for totals, key in keys:
            totals[key] += seconds
        return result

    return wrapper


def block_labels(block, params):
    """(type label, 'in -> out' shapes) of a leaf block, e.g. ('Conv 3x3', '32x32x32 -> 64x32x32')."""
    kind = type(block).__name__
    if kind == "Conv":  # the filter size lives in the weight's shape (F, C, k, k)
        size = params[block.w].shape[-1]
        kind = f"Conv {size}x{size}"
    shape = lambda s: "x".join(map(str, s))  # noqa: E731
    return kind, f"{shape(block.in_shape)} -> {shape(block.out_shape)}"


def describe_spec(spec, classes):
    """'conv_bn_relu 32, conv_bn_relu 32, pool, ..., affine 10' from ConvNet's normalised spec."""
    parts = []
    for kind, o in spec:
        size = o.get("filters") or o.get("units") or (o.get("keep") if kind == "dropout" else None)
        parts.append(f"{kind} {size}" if size else kind)
    return ", ".join(parts + [f"affine {classes}"])


# ---------------------------------------------------------------------------
# the parent: check, start workers, report
# ---------------------------------------------------------------------------


def worker_arguments(args, worker, repeats, threads=None):
    arguments = ["--worker", worker, "--repeats", str(repeats), "--threads", str(threads or args.threads),
                 "--batch-size", str(args.batch_size), "--optimizer", args.optimizer]
    arguments += ["--config", args.config] if args.config else []
    arguments += ["--channels-last" if args.channels_last else "--no-channels-last"]
    arguments += ["--reuse-memory" if args.reuse_memory else "--no-reuse-memory"]
    arguments += ["--learning-rate", repr(args.learning_rate)] if args.learning_rate is not None else []
    return arguments


def run_check(args):
    """Run the check worker, print its result; False if the networks differ."""
    record = timing.run_worker(__file__, worker_arguments(args, "check", 0))[0]["check"]
    ok = all(error <= tolerance for _, error, tolerance, _ in record["items"])
    print(f"check: {CHECK_BATCH} images, train mode, one {CHECK_OPTIMIZER} step "
          f"(lr {LEARNING_RATES[CHECK_OPTIMIZER]:g}){'; dropout off' if record['dropout_off'] else ''}; "
          f"loss {record['losses'][0]:.6f} (convnet) vs {record['losses'][1]:.6f} (torch)")
    for what, error, tolerance, worst in record["items"]:
        where = f" [worst: {worst}]" if worst else ""
        print(f"  {what}: max rel. difference {error:.1e}{where} (tolerance {tolerance:g})"
              f"{'' if error <= tolerance else '  FAILED'}")
    print(f"check {'OK' if ok else 'FAILED'}")
    return ok


#: What the timing workers run: {label: (worker, 1 thread instead of --threads, convnet imported first)}.
RUNS = {
    "convnet": ("convnet", False, False),
    "torch": ("torch", False, False),
    "convnet, imported before numpy": ("convnet", False, True),
    "convnet, 1 thread": ("convnet", True, False),
    "torch, 1 thread": ("torch", True, False),
    "convnet, im2col only": ("convnet_im2col", False, False),
    "GEMM peak": ("peak", False, False),
}


def runs_for(args, torch_version):
    """The RUNS labels this invocation times, in order."""
    labels = ["convnet"] + (["torch"] if torch_version else [])
    labels += ["convnet, imported before numpy"] if args.import_order else []
    if args.scaling and args.threads > 1:
        labels += ["convnet, 1 thread"] + (["torch, 1 thread"] if torch_version else [])
    labels += ["convnet, im2col only"] if args.winograd_ab else []
    return labels + ["GEMM peak"]


def measure(args, labels):
    """({label: [seconds per step]}, convnet's info), alternating workers round by round."""
    times, info = defaultdict(list), {}
    per_round = max(1, args.repeats // args.rounds)
    for _ in range(args.rounds):
        for label in labels:
            worker, one_thread, convnet_first = RUNS[label]
            arguments = worker_arguments(args, worker, per_round, 1 if one_thread else None)
            for record in timing.run_worker(__file__, arguments, convnet_first=convnet_first):
                info.update(record.get("info", {}))
                times[label] += record.get("times", [])
    return times, info


def print_table(times, batch_size):
    """The steps' table; each convnet row's ratio is to torch at the same thread count."""
    steps = {label: t for label, t in times.items() if label != "GEMM peak"}
    print("| implementation | ms / step (median) | min - max ms | images/s | convnet / torch images/s |")
    print("|---|---|---|---|---|")
    rate = {label: batch_size / statistics.median(t) for label, t in steps.items()}
    for label, t in steps.items():
        twin = "torch, 1 thread" if label.endswith("1 thread") else "torch"
        ratio = f"{rate[label] / rate[twin]:.2f}" if label.startswith("convnet") and twin in rate else ""
        print(f"| {label} | {statistics.median(t) * 1e3:.1f} | {min(t) * 1e3:.1f} - {max(t) * 1e3:.1f} "
              f"| {rate[label]:.1f} | {ratio} |")


def print_targets(times, info, args):
    """The GEMM peak, each library's fraction of it, the import-order check and the thread scaling."""
    step = {label: statistics.median(t) for label, t in times.items() if label != "GEMM peak"}
    peak = 2.0 * PEAK_SIZE**3 / statistics.median(times["GEMM peak"]) / 1e9
    flops = info["flops"]
    print(f"\nfloat32 GEMM peak (numpy {PEAK_SIZE}x{PEAK_SIZE} matmul, {args.threads} threads): {peak:.1f} GFLOP/s; "
          f"the step: {flops / 1e9:.1f} GFLOP (3x the forward flops of its convolutions and affine layers)")
    for label in ("convnet", "torch"):
        if label in step:
            rate = flops / step[label] / 1e9
            print(f"  {label}: {rate:.1f} GFLOP/s, {100 * rate / peak:.0f}% of the peak")
    if "convnet, imported before numpy" in step:
        print(f"import order: step time imported before numpy / after numpy: "
              f"{step['convnet, imported before numpy'] / step['convnet']:.2f}")
    if "convnet, im2col only" in step:
        print(f"Winograd: step time with im2col only / with Winograd: {step['convnet, im2col only'] / step['convnet']:.2f}")
    for label in ("convnet", "torch"):
        if f"{label}, 1 thread" in step and label in step:
            print(f"thread scaling 1 -> {args.threads} threads: {label} {step[f'{label}, 1 thread'] / step[label]:.2f}x")
    print("targets: convnet / torch images/s >= 1.0; >= 60% of the GEMM peak; import order 1.00 within noise; "
          "thread scaling >= 1.7x")


def print_profile(args):
    """Run the profile worker and print the time per block type, then per block."""
    record = timing.run_worker(__file__, worker_arguments(args, "profile", args.repeats))[0]["profile"]
    steps = record["steps"]
    total = sum(steps)
    per_step = lambda seconds: seconds / len(steps) * 1e3  # noqa: E731  mean ms per step

    parts = defaultdict(dict)
    for kind, phase, seconds in record["by_type"]:
        parts[kind][phase] = seconds
    print(f"\nconvnet profile: mean over {len(steps)} steps of {per_step(total):.1f} ms "
          f"(median step {statistics.median(steps) * 1e3:.1f} ms), summed over blocks of each type")
    print("| part | forward ms | backward ms | total ms | % of step |")
    print("|---|---|---|---|---|")
    for kind in sorted(parts, key=lambda k: -sum(parts[k].values())):
        seconds = sum(parts[kind].values())
        fwd, bwd = parts[kind].get("forward"), parts[kind].get("backward")
        cells = [f"{per_step(s):.1f}" if s is not None else "-" for s in (fwd, bwd)]
        print(f"| {kind} | {cells[0]} | {cells[1]} | {per_step(seconds):.1f} | {100 * seconds / total:.1f} |")
    rest = total - sum(seconds for *_, seconds in record["by_type"])
    print(f"| other (Python glue, residual sums) | | | {per_step(rest):.1f} | {100 * rest / total:.1f} |")

    blocks = defaultdict(dict)
    for label, phase, seconds in record["by_block"]:
        blocks[label][phase] = seconds
    print("\n| block | forward ms | backward ms | % of step |")
    print("|---|---|---|---|")
    for label, phases in blocks.items():  # in forward order
        print(f"| {label.strip()} | {per_step(phases['forward']):.1f} | {per_step(phases['backward']):.1f} "
              f"| {100 * sum(phases.values()) / total:.1f} |")


def machine_line(info, torch_version, args):
    return (f"convnet {info.get('convnet')} ({info.get('kernels')} kernels), numpy {info.get('numpy')} ({info.get('blas')}), "
            f"torch {torch_version or 'not measured'}; threads {args.threads} of {os.cpu_count()} cores ({timing.cpu_model()})")


WORKERS = {"convnet": convnet_worker, "convnet_im2col": convnet_im2col_worker, "torch": torch_worker,
           "check": check_worker, "profile": profile_worker, "peak": peak_worker}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML experiment file whose `model: layers:` block list to use")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--optimizer", choices=sorted(LEARNING_RATES), default="sgd_momentum",
                        help="update rule (default sgd_momentum, momentum 0.9)")
    parser.add_argument("--learning-rate", type=float,
                        help="default: convnet's, " + ", ".join(f"{k} {v:g}" for k, v in LEARNING_RATES.items()))
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per implementation, over all rounds")
    parser.add_argument("--rounds", type=int, default=2, help="alternating worker rounds for convnet and torch")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both libraries")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="first verify the torch twin is the same network (default on; needs torch)")
    parser.add_argument("--import-order", action=argparse.BooleanOptionalAction, default=True,
                        help="also time convnet imported before numpy (default on)")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True,
                        help="also time both libraries with 1 thread (default on)")
    parser.add_argument("--profile", action="store_true", help="also show where convnet's step time goes")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="PyTorch in its channels_last memory format (default; its fastest on the CPU)")
    parser.add_argument("--reuse-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="convnet's steps inside convnet.memory.reusing_memory(), as the Solver's (default: on)")
    parser.add_argument("--winograd-ab", action="store_true",
                        help="also time convnet with every convolution on im2col + GEMM (no Winograd)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return WORKERS[args.worker](args) or 0

    load_model_options(args.config)  # a bad config stops here, not inside a worker
    torch_version = None if args.no_torch else timing.torch_version()
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv])
    if args.check and torch_version:
        if not run_check(args):
            print("The torch twin is not the same network as convnet's; not timing.", file=sys.stderr)
            return 1
    elif args.check:
        print("check skipped: no PyTorch to compare with")
    times, info = measure(args, runs_for(args, torch_version))
    print(f"\n{machine_line(info, torch_version, args)}")
    print(f"network: {info['network']} ({info['parameters']:,} parameters), batch {args.batch_size} float32, "
          f"{args.optimizer} lr {learning_rate(args):g}; {args.repeats} timed steps per implementation "
          f"over {args.rounds} rounds (median); torch in {'channels_last' if args.channels_last else 'contiguous'} "
          "memory format\n")
    print_table(times, args.batch_size)
    print_targets(times, info, args)
    if args.profile:
        print_profile(args)
    print(f"\ncommand: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
