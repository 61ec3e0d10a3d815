"""One experiment config trained twice, by convnet and by the same recipe in PyTorch, side by side.

    python benchmarks/bench_recipe.py experiments/cifar10_airbench.yaml --data /work/data_full
    python benchmarks/bench_recipe.py experiments/cifar10_airbench.yaml --epochs 1 \\
        --set data.num_training=2000 --set model.layers.0.bias_epochs=null   # a smoke run
    python benchmarks/bench_recipe.py experiments/cifar10_convnet.yaml --epochs 1 --set schedule.peak_epoch=0.3

A shorter run must keep the config valid for convnet: it refuses a freeze epoch the run never
reaches (the whitening bias's bias_epochs: null in the smoke run) and a schedule peak after the end.

The PyTorch side is built from the config alone (torch_twin.ConfigTwin: the block list, the head
options), trained on the same data files with the same normalisation (convnet.data), the same
epochs, batch size, learning-rate schedule, update rule, parameter groups (lr multiplier, weight
decay, frozen parameters), label smoothing, lookahead, augmentation and test-time augmentation,
with its own seeds (torch's generator seeded with the config's seed). It reports its final state,
which is convnet's with solver.result: final (the recipes' setting); with result: best convnet
reports its best epoch instead, so compare such configs with care. The convnet side is
``python -m convnet.train CONFIG`` in a process of its own; its numbers come from the run directory.

Reported for each: test accuracy on every test image of the data, and on the pixel-exact test
images (--exact: the 1,017 of /work/shared/data/cifar-10-batches-py; the first data.num_test of
them when it is set, as convnet.evaluate reads them), wall time (data loading, training and
evaluation, as convnet's summary.json counts it), training seconds, images/s (training images per
training second) and effective GFLOP/s: 3 x the forward convolution flops (forward, input
gradient, weight gradient) x training images / training seconds. Written: a JSON record and a
markdown table in --out.

Each implementation runs in a worker process started from the environment this script was
started with (benchmarks/timing.py says why). --threads sets both libraries' thread counts.
"""

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import timing
from torch_twin import ConfigTwin, forward_flops, model_head_options

EXACT_DIR = "/work/shared/data/cifar-10-batches-py"
#: What the recipe reads that the coordination schema of issue 11 added, and its defaults (used where
#: convnet's config validation does not fill them in yet).
SCHEMA_DEFAULTS = {
    "data": {"num_validation": 1000, "num_training": None, "num_test": None, "normalization": "mean_image",
             "augment": None, "root": None},
    "augment": {"crop_padding": 0, "pad_mode": "zeros", "flip": False, "cutout_size": 0},
    "model": {"reg": 0.0, "label_smoothing": 0.0, "input_dim": [3, 32, 32], "num_classes": 10},
    "solver": {"batch_size": 100, "num_epochs": 10, "lookahead": None, "tta": None, "eval_batch_size": 256},
    "lookahead": {"every": 5, "decay": 0.95, "power": 3},
}
#: convnet's update rules the PyTorch side has (torch.optim's SGD and Adam, coupled weight decay).
RULES = ("sgd", "sgd_momentum", "nesterov", "adam")


# ---------------------------------------------------------------------------
# the recipe: the config, read once by the parent
# ---------------------------------------------------------------------------


def read_recipe(path, overrides):
    """(raw config with the overrides applied, the same validated by convnet); SystemExit if convnet refuses it."""
    from convnet.config import ConfigError, apply_override, read_yaml, validate_config

    raw = read_yaml(path)
    try:
        for assignment in overrides:
            apply_override(raw, assignment)
        return raw, validate_config(json.loads(json.dumps(raw)))
    except ConfigError as exc:
        raise SystemExit(f"{path}: {exc}") from None


def compare_with_convnet(raw, resolved):
    """None if convnet's model of the config has the twin's layers and parameter names, else what differs."""
    from convnet.experiment import build_model
    from torch_twin import twin_layers

    model = build_model(resolved)
    m = section(raw, "model")
    twin = ConfigTwin(m["layers"], m["input_dim"], m["num_classes"], **model_head_options(m))
    names = [name for name, *_ in twin.params]
    if names != list(model.params):
        return f"parameter names differ: twin {names}, convnet {list(model.params)}"
    theirs = twin_layers(model.network, model.params)
    if theirs != twin.layers:
        where = next(i for i, (a, b) in enumerate(zip(theirs + [None] * len(twin.layers), twin.layers)) if a != b)
        return f"layer {where} differs: convnet's model gives {theirs[where:where + 1]}, the config twin " \
               f"{twin.layers[where:where + 1]}"
    return None


def section(raw, key, defaults_key=None):
    return {**SCHEMA_DEFAULTS[defaults_key or key], **(raw.get(key) or {})}


def schedule_function(raw, solver):
    """lr multiplier as a function of training progress in epochs: convnet's schedule of the config
    (convnet.schedules), constant without one. The loop evaluates it where convnet's Solver does, at the
    progress before each update (epoch + batch / iterations per epoch)."""
    from convnet.schedules import make_schedule

    schedule = raw.get("schedule")
    if not schedule:
        return lambda epoch: 1.0
    return make_schedule(schedule, 1.0, solver["num_epochs"])


def training_length(num_images, solver):
    """(iterations per epoch, updates, epochs) of the run: convnet's rule (convnet.solver.training_length),
    the last partial batch of an epoch included and the last epoch maybe partial."""
    from convnet.solver import training_length as convnet_training_length

    per_epoch = math.ceil(num_images / solver["batch_size"])
    return (per_epoch, *convnet_training_length(solver["num_epochs"], per_epoch))


def freeze_plan(twin, settings):
    """{convnet name: epoch from which it is frozen}: the blocks' own (twin.freeze_after) merged with the
    groups' (the settings' third field) by convnet's rule (convnet.optim.merge_freeze_epochs)."""
    from convnet.optim import merge_freeze_epochs

    return merge_freeze_epochs(twin.freeze_after, {n: s[2] for n, s in settings.items() if s[2] is not None})


def parameter_settings(names, ndims, raw):
    """{convnet name: (lr multiplier, weight decay, freeze epoch or None)} from optim.groups and model.reg,
    by convnet.optim's own rule (the first group whose glob matches wins); weight decay null is model.reg
    on weights (ndim >= 2), 0 else."""
    from convnet import optim
    from convnet.config import ConfigError

    reg = section(raw, "model")["reg"]
    try:
        plans = optim.plan_parameters(optim.resolve_groups((raw.get("optim") or {}).get("groups")), names)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    return {name: (plan.lr_multiplier, (reg if ndim >= 2 else 0.0) if plan.weight_decay is None else plan.weight_decay,
                   plan.freeze_after)
            for (name, plan), ndim in zip(plans.items(), ndims)}


def conv_flops_per_image(resolved):
    """Forward flops of the convolutions per image (torch_twin.forward_flops) of convnet's model of the config."""
    from convnet.experiment import build_model

    return forward_flops(build_model(resolved), affine=False)


# ---------------------------------------------------------------------------
# the PyTorch worker
# ---------------------------------------------------------------------------


def exact_count(data_config, available):
    """How many pixel-exact test images both sides score: the first data.num_test, at most all of them."""
    return available if data_config["num_test"] is None else min(data_config["num_test"], available)


def load_data(raw, data_root, exact_dir):
    """(splits of convnet.data.prepare_splits, X_exact, y_exact normalised like the training set)."""
    from convnet import data as cifar

    d = section(raw, "data")
    root = data_root or d["root"]
    batches = cifar.find_batches_dir(root)
    splits = cifar.prepare_splits(*cifar.load_cifar10(batches), num_training=d["num_training"],
                                  num_validation=d["num_validation"], num_test=d["num_test"],
                                  normalization=d["normalization"], source=batches)
    X_exact, y_exact = cifar.load_batch(Path(exact_dir) / cifar.TEST_BATCH)
    count = exact_count(d, len(X_exact))
    return splits, cifar.normalize_images(X_exact[:count], splits), y_exact[:count]


def translate(X, padding, mode, generator):
    """Each image of X (N, C, H, W) shifted by its own random offset in [-padding, padding]^2, the border
    filled by ``mode`` ('zeros' or 'reflect')."""
    import torch
    import torch.nn.functional as F

    N, C, H, W = X.shape
    padded = F.pad(X, (padding,) * 4, mode="constant" if mode == "zeros" else "reflect")
    top = torch.randint(0, 2 * padding + 1, (N,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (N,), generator=generator)
    rows = (top[:, None] + torch.arange(H))[:, None, :, None]  # (N, 1, H, 1)
    cols = (left[:, None] + torch.arange(W))[:, None, None, :]  # (N, 1, 1, W)
    return padded[torch.arange(N)[:, None, None, None], torch.arange(C)[None, :, None, None], rows, cols]


def cutout(X, size, generator):
    import torch

    N, _, H, W = X.shape
    top = torch.randint(0, H, (N,), generator=generator) - size // 2
    left = torch.randint(0, W, (N,), generator=generator) - size // 2
    rows, cols = torch.arange(H), torch.arange(W)
    inside = (((rows >= top[:, None]) & (rows < top[:, None] + size))[:, :, None]
              & ((cols >= left[:, None]) & (cols < left[:, None] + size))[:, None, :])
    return X.masked_fill(inside[:, None], 0.0)


class Augment:
    """convnet's data.augment on torch batches: translate (crop_padding, pad_mode), then flip (true: a coin
    per image and step; alternating: a coin per image once, then every image mirrored in every other epoch
    relative to it), then cutout."""

    def __init__(self, options, num_images, generator):
        self.options, self.generator = options, generator
        import torch

        self.first_flip = torch.rand(num_images, generator=generator) < 0.5

    def __call__(self, X, indices, epoch):
        import torch

        o = self.options
        if o["crop_padding"]:
            X = translate(X, o["crop_padding"], o["pad_mode"], self.generator)
        if o["flip"] == "alternating":
            flip = self.first_flip[indices] ^ (epoch % 2 == 1)
        elif o["flip"]:
            flip = torch.rand(len(X), generator=self.generator) < 0.5
        else:
            flip = None
        if flip is not None:
            X = torch.where(flip[:, None, None, None], X.flip(-1), X)
        if o["cutout_size"]:
            X = cutout(X, o["cutout_size"], self.generator)
        return X


def logits(net, X, tta, batch_size, memory_format):
    """Scores of X in eval mode, averaged over the test-time augmentations of ``tta``
    (None | flip | flip_translate: 0.5 flip(x) + 0.5 mean of flip() of x shifted by one pixel each way)."""
    import torch
    import torch.nn.functional as F

    def flipped(x):
        scores = net(x.contiguous(memory_format=memory_format))
        return scores if tta is None else 0.5 * (scores + net(x.flip(-1).contiguous(memory_format=memory_format)))

    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            x = X[start : start + batch_size]
            scores = flipped(x)
            if tta == "flip_translate":
                H, W = x.shape[-2:]
                padded = F.pad(x, (1,) * 4, mode="reflect")
                shifted = [padded[:, :, :H, :W], padded[:, :, 2 : H + 2, 2 : W + 2]]
                scores = 0.5 * scores + 0.25 * (flipped(shifted[0]) + flipped(shifted[1]))
            out.append(scores)
    net.train()
    return torch.cat(out)


class Lookahead:
    """Every ``every`` steps: avg += (1 - d) (state - avg), d = decay**every * (step / total)**power, then
    state := avg (floating-point state: parameters and batch-norm running statistics)."""

    def __init__(self, net, every, decay, power):
        self.net, self.every, self.decay, self.power = net, every, decay, power
        self.average = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    def step(self, step, total):
        if step % self.every == 0:
            self.update(self.decay**self.every * (step / total) ** self.power)

    def update(self, d):
        import torch

        with torch.no_grad():
            for key, value in self.net.state_dict().items():
                if key in self.average:
                    self.average[key].lerp_(value, 1 - d)
                    value.copy_(self.average[key])


def make_optimizer(params, settings, raw):
    """(torch optimizer, base learning rate): convnet's rule with its declared defaults (convnet.optim.RULES),
    one parameter group per (lr multiplier, weight decay); the decay is coupled (added to the gradient
    before the rule), as convnet's groups and model.reg are."""
    import torch

    from convnet.optim import RULES as CONVNET_RULES

    optim = dict(raw.get("optim") or {})
    rule = optim.pop("rule", "sgd")
    if rule not in RULES:
        raise SystemExit(f"optim.rule {rule!r}: the PyTorch side knows {', '.join(RULES)}")
    hyper = {key: option.default for key, option in CONVNET_RULES[rule].options.items()}
    hyper.update({key: value for key, value in optim.items() if key in hyper})
    groups = {}
    for name, param in params.items():
        multiplier, decay, _ = settings[name]
        groups.setdefault((multiplier, decay), []).append(param)
    param_groups = [{"params": ps, "lr_multiplier": m, "weight_decay": wd} for (m, wd), ps in groups.items()]
    if rule == "adam":
        optimizer = torch.optim.Adam(param_groups, lr=0.0, betas=(hyper["beta1"], hyper["beta2"]),
                                     eps=hyper["epsilon"])
    else:
        optimizer = torch.optim.SGD(param_groups, lr=0.0, momentum=hyper.get("momentum", 0.0),
                                    nesterov=rule == "nesterov")
    return optimizer, float(hyper["learning_rate"])


def emit(**record):
    print(json.dumps(record), flush=True)


def run_torch(worker_arguments):
    """The PyTorch worker's result; its stderr (the per-epoch lines) passes through."""
    command = [sys.executable, os.path.abspath(__file__), *worker_arguments]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"the PyTorch worker failed (exit {completed.returncode})")
    records = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    return next(r["result"] for r in records if "result" in r)


SCORES_RTOL = 1e-4  # max |difference| / max |score| of the check's float32 scores
WHITEN_RTOL = 1e-3  # of the whitening filters' magnitudes (float32 eigenvectors of two libraries)


def check_against_convnet(raw, net, params, X_train, images=16):
    """Is the twin the network convnet builds from the config? None when convnet does not accept the config
    (yet); else a line saying so; SystemExit when it is not.

    With convnet's parameters copied in, both give the same test-mode scores on ``images`` training images.
    The twin's own whitening filters are compared first, by magnitude: an eigenvector's sign is arbitrary,
    and each filter comes with its negative.
    """
    import torch

    from convnet.config import ConfigError, validate_config
    from convnet.experiment import build_model

    try:
        model = build_model(validate_config(json.loads(json.dumps(raw))))
    except ConfigError:
        return None
    if hasattr(model, "initialize_from_data"):
        model.initialize_from_data(X_train)
    problems = []
    for name, param in params.items():
        if name.startswith("whiten") and name.endswith(".W"):
            theirs = np.abs(param.detach().numpy())
            error = np.max(np.abs(np.abs(model.params[name]) - theirs)) / np.max(theirs)
            if error > WHITEN_RTOL:
                problems.append(f"{name} differs by {error:.1e} (relative, magnitudes)")
    own = {name: param.detach().clone() for name, param in params.items()}
    X = X_train[:images]
    with torch.no_grad():
        for name, param in params.items():
            value = model.params[name].T if param.dim() == 2 else model.params[name]  # Linear: (M, D)
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        theirs = net.eval()(torch.from_numpy(X)).numpy()
        net.train()
        for name, param in params.items():
            param.copy_(own[name])
    ours = model.loss(X)
    error = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    if error > SCORES_RTOL:
        problems.append(f"test-mode scores differ by {error:.1e} (relative) with convnet's parameters")
    if problems:
        raise SystemExit("the PyTorch twin is not the network convnet builds: " + "; ".join(problems))
    return f"with convnet's parameters the twin's scores agree to {error:.1e} (relative) on {len(X)} images"


def torch_worker(args):
    """Train the recipe in PyTorch; emit {'result': ...}."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    raw = json.loads(Path(args.recipe).read_text())
    model_config, solver = section(raw, "model"), section(raw, "solver")
    augment_options = {**SCHEMA_DEFAULTS["augment"], **(section(raw, "data")["augment"] or {})}
    seed = int(raw.get("seed", 0))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    started = time.perf_counter()
    splits, X_exact, y_exact = load_data(raw, args.data, args.exact)
    X_train, y_train = torch.from_numpy(splits["X_train"]), torch.from_numpy(splits["y_train"])
    X_test, y_test = torch.from_numpy(splits["X_test"]), torch.from_numpy(splits["y_test"])
    loaded = time.perf_counter() - started

    twin = ConfigTwin(model_config["layers"], model_config["input_dim"], model_config["num_classes"],
                      **model_head_options(model_config))
    net, params = twin.build(seed)
    twin.initialize_from_data(net, X_train)
    checked = check_against_convnet(raw, net, params, splits["X_train"])
    if checked is not None:
        print(f"twin check: {checked}", file=sys.stderr, flush=True)
    net = net.to(memory_format=memory_format)
    settings = parameter_settings(list(params), [p.dim() for p in params.values()], raw)
    freeze_after = freeze_plan(twin, settings)
    optimizer, base_lr = make_optimizer(params, settings, raw)
    schedule = schedule_function(raw, solver)
    lookahead = Lookahead(net, **{**SCHEMA_DEFAULTS["lookahead"], **solver["lookahead"]}) if solver["lookahead"] else None
    generator = torch.Generator().manual_seed(seed)
    augment = Augment(augment_options, len(X_train), generator)

    batch = solver["batch_size"]
    per_epoch, total, epochs = training_length(len(X_train), solver)
    step, images, train_seconds, losses = 0, 0, 0.0, []
    for epoch in range(epochs):
        for name, param in params.items():  # frozen from the start of epoch freeze_after[name]
            param.requires_grad_(epoch < freeze_after.get(name, math.inf))
            param.grad = None
        order = torch.randperm(len(X_train), generator=generator)
        epoch_started = time.perf_counter()
        for position in range(0, len(X_train), batch):
            if step == total:
                break
            indices = order[position : position + batch]
            X = augment(X_train[indices], indices, epoch).contiguous(memory_format=memory_format)
            lr = base_lr * schedule(epoch + position // batch / per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_multiplier"]
            loss = F.cross_entropy(net(X), y_train[indices], label_smoothing=model_config["label_smoothing"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            images += len(indices)
            if lookahead is not None:
                lookahead.step(step, total)
            losses.append(loss.item())
        train_seconds += time.perf_counter() - epoch_started
        if not math.isfinite(losses[-1]):
            raise SystemExit(f"the PyTorch run diverged in epoch {epoch + 1} (loss {losses[-1]})")
        if args.verbose:
            print(f"torch epoch {epoch + 1}: loss {np.mean(losses[-per_epoch:]):.4f}, "
                  f"{time.perf_counter() - epoch_started:.1f} s", file=sys.stderr, flush=True)
    if lookahead is not None:
        lookahead.update(1.0)  # params := the average

    tta, eval_batch = solver["tta"], solver["eval_batch_size"]
    test_acc = (logits(net, X_test, tta, eval_batch, memory_format).argmax(1) == y_test).double().mean().item()
    exact = logits(net, torch.from_numpy(X_exact), tta, eval_batch, memory_format).argmax(1)
    exact_acc = (exact == torch.from_numpy(y_exact)).double().mean().item()
    emit(result={
        "test_acc": test_acc, "test_images": len(X_test), "exact_acc": exact_acc, "exact_images": len(X_exact),
        "wall_seconds": time.perf_counter() - started, "train_seconds": train_seconds, "load_seconds": loaded,
        "steps": step, "images": images, "epochs": step / per_epoch, "train_images": len(X_train),
        "first_loss": losses[0], "last_epoch_loss": float(np.mean(losses[-per_epoch:])),
        "seconds_per_epoch": train_seconds / (step / per_epoch), "tta": tta,
        "memory_format": "channels_last" if args.channels_last else "contiguous", "torch": torch.__version__,
    })


# ---------------------------------------------------------------------------
# the convnet side: its own CLI, numbers from the run directory
# ---------------------------------------------------------------------------


def run_convnet(args, overrides, out_dir):
    """Train with ``python -m convnet.train``; the result record from its run directory."""
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=out_dir))
    command = [sys.executable, "-m", "convnet.train", str(args.config), "--output-dir", str(runs),
               "--threads", str(args.threads), "--no-progress"] + (["--quiet"] if args.quiet else [])
    for assignment in overrides + ([f"data.root={args.data}"] if args.data else []):
        command += ["--set", assignment]
    print(f"convnet: {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, check=False)
    wall = time.perf_counter() - started
    summaries = sorted(runs.glob("*/*/summary.json"))
    if completed.returncode != 0 or not summaries:
        raise SystemExit(f"convnet.train failed (exit {completed.returncode}); its run directories are in {runs}")
    run_dir = summaries[-1].parent
    summary = json.loads(summaries[-1].read_text())
    exact_acc, exact_images, exact_note = evaluate_exact(run_dir, summary, args.exact)
    return {"test_acc": summary["test_acc"], "test_images": summary["data"]["test"], "exact_acc": exact_acc,
            "exact_images": exact_images, "exact_note": exact_note, "wall_seconds": summary["wall_seconds"],
            "process_seconds": wall, "train_seconds": summary["train_seconds"],
            "images_per_second": summary["images_per_second"], "epochs": summary["epochs"],
            "iterations": summary["iterations"], "run_dir": str(run_dir)}


def evaluate_exact(run_dir, summary, exact_dir):
    """(accuracy, images, note) of the run's reported state on the pixel-exact test images (as many as
    exact_count gives), with the run's test-time augmentation (convnet.inference: evaluate --tta's rule)."""
    from convnet import inference
    from convnet.config import read_yaml
    from convnet import data as cifar

    weights = summary.get("checkpoint") or run_dir  # the file holding the reported state
    config = read_yaml(Path(run_dir) / "config.yaml")
    tta = config["solver"]["tta"]
    X, y = cifar.load_batch(Path(exact_dir) / cifar.TEST_BATCH)
    count = exact_count(config["data"], len(X))
    X, y = X[:count], y[:count]
    model = inference.load_model(weights)
    predictions = model.predict(X.transpose(0, 2, 3, 1), tta=tta)  # (N, H, W, C) uint8, as predict takes
    return float(np.mean(predictions == y)), len(y), None


# ---------------------------------------------------------------------------
# the parent
# ---------------------------------------------------------------------------


def cpu_line(threads):
    """bench_train's machine line (versions, threads, CPU), and the load average at the start."""
    from threadpoolctl import threadpool_info

    import bench_train
    import convnet
    from convnet._kernels.cpu import kernel_isa

    blas = [f"{lib['internal_api']} {lib['version']}" for lib in threadpool_info() if lib["user_api"] == "blas"]
    info = {"convnet": convnet.__version__, "kernels": kernel_isa(), "numpy": np.__version__,
            "blas": ", ".join(blas) or "unknown"}
    line = bench_train.machine_line(info, timing.torch_version(), argparse.Namespace(threads=threads))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{line}; load average {load:.2f} at the start"


def table(results, flops):
    lines = ["| implementation | test acc (all) | test acc (exact) | wall s | train s | epochs | images/s | "
             "effective GFLOP/s |", "|---|---|---|---|---|---|---|---|"]
    for impl, r in results.items():
        rate = r.get("images_per_second") or r["images"] / r["train_seconds"]
        lines.append(f"| {impl} | {100 * r['test_acc']:.2f}% ({r['test_images']}) | "
                     f"{100 * r['exact_acc']:.2f}% ({r['exact_images']}) | {r['wall_seconds']:.1f} | "
                     f"{r['train_seconds']:.1f} | {r['epochs']:g} | {rate:.1f} | {3 * flops * rate / 1e9:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="convnet experiment YAML file")
    parser.add_argument("--only", choices=("torch", "convnet"), help="run one implementation")
    parser.add_argument("--epochs", type=float, help="override solver.num_epochs (a smoke run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, as python -m convnet.train --set (repeatable)")
    parser.add_argument("--data", help="CIFAR-10 root for both (default: the config's data.root, else $CONVNET_DATA)")
    parser.add_argument("--exact", default=EXACT_DIR, help=f"pixel-exact batches directory (default {EXACT_DIR})")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both libraries")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="torch's channels_last memory format (default on: faster on this CPU, docs/recipe.md)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_recipe"), help="where the records go")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines from either side")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.verbose = not args.quiet
    if args.worker:
        return torch_worker(args) or 0

    overrides = list(args.overrides) + ([f"solver.num_epochs={args.epochs:g}"] if args.epochs is not None else [])
    raw, resolved = read_recipe(args.config, overrides)
    if (raw.get("model") or {}).get("type") != "ConvNet":
        raise SystemExit(f"{args.config}: bench_recipe needs a model of type ConvNet (a block list to twin)")
    difference = compare_with_convnet(raw, resolved)
    print(f"twin check: {difference or 'the same layers and parameter names as convnet builds'}")
    if difference and args.only != "convnet":
        raise SystemExit("the PyTorch twin is not the network convnet builds; not training it")
    flops = conv_flops_per_image(resolved)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv])
    print(cpu_line(args.threads) + "; the machine is shared with other jobs unless said otherwise")
    print(f"network: {flops / 1e6:.1f} MFLOP of convolutions per image forward")

    results = {}
    if args.only in (None, "torch"):
        recipe_file = args.out / f"recipe-{stamp}.json"
        recipe_file.write_text(json.dumps(resolved))  # with convnet's defaults filled in
        worker = ["--worker", "--recipe", str(recipe_file), "--threads", str(args.threads), "--exact", args.exact,
                  str(args.config)] + (["--data", args.data] if args.data else []) + \
                 (["--channels-last"] if args.channels_last else ["--no-channels-last"]) + (["--quiet"] if args.quiet else [])
        results["torch"] = run_torch(worker)
    if args.only in (None, "convnet"):
        results["convnet"] = run_convnet(args, overrides, args.out)

    print("\n" + table(results, flops))
    if len(results) == 2:
        gap = 100 * (results["convnet"]["test_acc"] - results["torch"]["test_acc"])
        print(f"\nconvnet - torch test accuracy: {gap:+.2f} points (target: within 0.3)")
    record = {"command": command, "config": str(args.config), "overrides": overrides, "cpu": cpu_line(args.threads),
              "conv_flops_per_image": flops, "results": results}
    (args.out / f"bench_recipe-{stamp}.json").write_text(json.dumps(record, indent=2))
    (args.out / f"bench_recipe-{stamp}.md").write_text(f"`{command}`\n\n{record['cpu']}\n\n{table(results, flops)}\n")
    print(f"\nrecord: {args.out / f'bench_recipe-{stamp}.json'}\ncommand: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
