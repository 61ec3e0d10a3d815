"""Hyperparameter sweeps on Ray Tune: the sweep file, the trial, its reporting, the results.

A sweep file names a base experiment, fixed ``--set`` overrides and a search space over any
config key; :func:`load_sweep` validates all of it before Ray starts. Each trial is an ordinary
convnet run directory ``<storage>/<name>/runs/<trial id>/`` trained by :func:`experiment.run`;
:class:`TuneReport` reports every epoch to Tune on the ``'checkpoint'`` event, so the file it
hands over is on disk, and a trial Tune restarts resumes from that checkpoint exactly.

Ray is imported only inside the functions that need it (the optional extra ``convnet[ray]``).
"""

import csv
import json
import math
import os
import shutil
from pathlib import Path

import yaml

import convnet
from convnet import experiment
from convnet.callbacks import read_metrics
from convnet.config import ConfigError, apply_override, load_config, read_yaml, validate_config
from convnet.options import NONE, REQUIRED, Option, check, choose, resolve

#: The metrics a trial reports each epoch (a sweep's ``metric`` is one of them) and the
#: mode each is best in when the sweep file says none.
METRICS = {"val_acc": "max", "train_acc": "max", "loss": "min"}
#: Search-space kinds: choice and grid list values; uniform and loguniform give [low, high].
DISTRIBUTIONS = {"choice": "values", "grid": "values", "uniform": "bounds", "loguniform": "bounds"}
#: The key of the resolved sweep holding the base experiment's text, so --resume sees it change.
EXPERIMENT_TEXT = "experiment_text"
SCHEDULERS = {
    "asha": {
        "type": Option("asha", str),
        "grace_period": Option(1, int, range="[1, inf)", help="epochs every trial trains before it can be stopped"),
        "reduction_factor": Option(2, (int, float), range="(1, inf)",
                                   help="keep the best 1/reduction_factor of trials at each rung"),
    },
    "none": {"type": Option("none", str)},
}
SWEEP = {
    "name": Option(None, (str, NONE), help="the sweep's directory under storage (`null`: the sweep file's name)"),
    "experiment": Option(REQUIRED, str, help="the base experiment file, relative to the sweep file"),
    "set": Option([], list, each=Option(REQUIRED, str), help="fixed KEY=VALUE overrides, as train's --set"),
    "search": Option(REQUIRED, dict, help="config key -> {choice|grid: [values]} or {uniform|loguniform: [low, high]}"),
    "trials": Option(1, int, range="[1, inf)",
                     help="trials to sample (with grid keys: repeats of the whole grid)"),
    "metric": Option("val_acc", str, choices=tuple(METRICS), help="what Tune compares, from each epoch"),
    "mode": Option(None, (str, NONE), choices=("max", "min", None),
                   help="`max` or `min` (`null`: max for accuracies, min for loss)"),
    "scheduler": Option({"type": "asha"}, (dict, str), help="`asha` (with grace_period, reduction_factor) or `none`"),
    "cpus_per_trial": Option(1, int, range="[1, 1024]", help="CPUs Ray gives each trial; its thread count"),
    "max_concurrent_trials": Option(None, (int, NONE), range="[1, inf)", help="at most this many trials at once"),
    "storage": Option("runs/sweeps", str, help="the sweep goes to `<storage>/<name>/`"),
    "seed": Option(0, int, range="[0, inf)", help="seeds the sampling of the search space"),
}
#: Files a trial hands Tune as its checkpoint, and copies back into its run directory on a restore.
CHECKPOINT_FILES = ("checkpoint.npz", "best.npz", "metrics.csv", "config.yaml")
#: Where a sweep keeps the resolved sweep file it started with (``--resume`` compares against it).
SPEC_FILE = "sweep.json"


# ----------------------------------------------------------------------
# the sweep file
# ----------------------------------------------------------------------

def yaml_value(value):
    """A value as one line of YAML, the way --set reads it back: 0.01, adam, [8, 16]."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def assignment(key, value):
    """'key=value' for --set."""
    return f"{key}={yaml_value(value)}"


def _search_entry(key, spec):
    """(kind, values) for one search key, checked for shape; the values' fit is checked later."""
    path = f"search.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"sweep key '{path}' must be one of {{choice: [...]}}, {{grid: [...]}}, "
                          f"{{uniform: [low, high]}}, {{loguniform: [low, high]}}, got {spec!r}")
    ((kind, values),) = spec.items()
    choose(f"{path}", kind, DISTRIBUTIONS)
    if DISTRIBUTIONS[kind] == "values":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep key '{path}.{kind}' must be a non-empty list of values, got {values!r}")
        return kind, values
    low, high = check(f"{path}.{kind}", values, Option(REQUIRED, list, each=Option(REQUIRED, float), length=2))
    if not low < high:
        raise ConfigError(f"sweep key '{path}.{kind}' must be [low, high] with low < high, got {values!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"sweep key '{path}.loguniform' needs low > 0, got {values!r}")
    return kind, [low, high]


def _check_values(sweep, raw_experiment):
    """Every search value (both bounds of a range) must make a valid experiment with the fixed
    overrides; returns the largest num_epochs they give (ASHA's max_t)."""
    def validated(extra):
        raw = yaml.safe_load(yaml.safe_dump(raw_experiment))
        for text in [*sweep["set"], *extra]:
            apply_override(raw, text)
        return validate_config(raw)

    try:
        epochs = [validated([])["solver"]["num_epochs"]]
    except ConfigError as exc:
        raise ConfigError(f"experiment {sweep['experiment']} with the sweep's set: {exc}") from None
    for key, (kind, values) in sweep["search"].items():
        for value in values:
            try:
                epochs.append(validated([assignment(key, value)])["solver"]["num_epochs"])
            except ConfigError as exc:
                raise ConfigError(f"sweep key 'search.{key}' ({kind} value {value!r}): {exc}") from None
    return max(epochs)


def load_sweep(path):
    """Read and validate a sweep file; returns the resolved sweep dict (paths made absolute).

    Everything is checked before Ray starts: the sweep's own keys, the base experiment, the
    fixed overrides and every search value (as config keys, with the config's did-you-mean).
    """
    path = Path(path)
    raw = read_yaml(path, "sweep file")
    try:
        sweep = resolve("", raw, SWEEP)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("config key", "sweep key", 1)) from None
    scheduler = sweep["scheduler"]
    scheduler = {"type": scheduler} if isinstance(scheduler, str) else scheduler
    options = choose("scheduler.type", scheduler.get("type"), SCHEDULERS)
    sweep["scheduler"] = resolve("scheduler", scheduler, options, context=f" for {scheduler['type']}")
    if not sweep["search"]:
        raise ConfigError("sweep key 'search' must name at least one config key to search over")
    sweep["search"] = {key: _search_entry(key, spec) for key, spec in sweep["search"].items()}
    sweep["mode"] = sweep["mode"] or METRICS[sweep["metric"]]
    sweep["name"] = sweep["name"] or path.stem
    experiment_path = (path.parent / sweep["experiment"]).resolve()
    sweep["experiment"] = str(experiment_path)
    sweep["storage"] = str(Path(sweep["storage"]).resolve())
    raw_experiment = read_yaml(experiment_path, "sweep key 'experiment': the experiment")
    sweep["max_epochs"] = _check_values(sweep, raw_experiment)
    if sweep["scheduler"]["type"] == "asha" and sweep["scheduler"]["grace_period"] > sweep["max_epochs"]:
        raise ConfigError(f"sweep key 'scheduler.grace_period' ({sweep['scheduler']['grace_period']}) must be at "
                          f"most the trials' num_epochs ({sweep['max_epochs']})")
    # What --resume compares: the sweep and the base experiment's text (a changed experiment changes the trials).
    sweep[EXPERIMENT_TEXT] = experiment_path.read_text(encoding="utf-8")
    return sweep


def sweep_dir(sweep):
    return Path(sweep["storage"]) / sweep["name"]


def save_spec(sweep):
    sweep_dir(sweep).mkdir(parents=True, exist_ok=True)
    (sweep_dir(sweep) / SPEC_FILE).write_text(json.dumps(sweep, indent=2))


def changed_keys(sweep):
    """The sweep keys that differ from the ones the sweep in sweep_dir started with."""
    saved = json.loads((sweep_dir(sweep) / SPEC_FILE).read_text())
    now = json.loads(json.dumps(sweep))  # tuples -> lists, as saved
    return sorted(key for key in set(saved) | set(now) if saved.get(key) != now.get(key))


def trial_dir(sweep, trial_id):
    """A trial's run directory: <storage>/<name>/runs/<trial id>/."""
    return sweep_dir(sweep) / "runs" / trial_id


def trial_overrides(sweep, values):
    """The ``--set`` overrides that make the base experiment one trial's: the fixed set, then the trial's values."""
    return [*sweep["set"], *(assignment(key, values[key]) for key in sweep["search"])]


def trial_config(sweep, values):
    """The resolved experiment of one trial: base, fixed set, the trial's values, its threads."""
    overrides = [*trial_overrides(sweep, values), f"threads={sweep['cpus_per_trial']}", "output.checkpoint=true"]
    return load_config(sweep["experiment"], overrides)


def train_command(sweep, values):
    """The ``python -m convnet.train`` command line that trains one trial's configuration."""
    import shlex

    sets = trial_overrides(sweep, values)
    experiment_path = os.path.relpath(sweep["experiment"])
    if experiment_path.startswith(".."):  # not under the current directory: the absolute path reads better
        experiment_path = sweep["experiment"]
    return " ".join(["python -m convnet.train", shlex.quote(experiment_path),
                     *(f"--set {shlex.quote(text)}" for text in sets)])


# ----------------------------------------------------------------------
# inside a trial (a Ray worker process)
# ----------------------------------------------------------------------

class TuneReport:
    """Solver callback: on each epoch's ``'checkpoint'`` event (the file is on disk), reports
    the epoch's metrics (and ``extra``, e.g. the Ray node) to Tune with a checkpoint of checkpoint.npz, best.npz, metrics.csv and
    config.yaml (hard links into ``run_dir/.tune``, so later writes do not change them)."""

    def __init__(self, run_dir, report, extra=None):
        self.run_dir, self.report, self.extra = Path(run_dir), report, dict(extra or {})
        self._epoch = None

    def __call__(self, event, solver, info):
        if event == "epoch":
            self._epoch = info
        elif event == "checkpoint" and info["reason"] == "epoch" and self._epoch is not None:
            metrics = {"epoch": self._epoch["epoch"], "val_acc": self._epoch["val_acc"],
                       "train_acc": self._epoch["train_acc"], "loss": self._epoch["loss"],
                       "run_dir": str(self.run_dir), "threads": convnet.get_num_threads(), **self.extra}
            self.report(metrics, self._stage())
            self._epoch = None

    def _stage(self):
        stage = self.run_dir / ".tune"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        for name in CHECKPOINT_FILES:
            if (self.run_dir / name).is_file():
                try:
                    os.link(self.run_dir / name, stage / name)
                except OSError:  # no hard links here
                    shutil.copy2(self.run_dir / name, stage / name)
        return stage


def run_trial(values, sweep):
    """Tune's trainable: train one trial as an ordinary run directory, reporting every epoch.

    ``values``: {config key: value} Tune chose. A trial Tune restores (after a failure or a
    sweep's --resume) copies its last reported checkpoint back and resumes from it exactly.
    """
    import ray
    from ray import tune

    config = trial_config(sweep, values)
    run_dir = trial_dir(sweep, tune.get_context().get_trial_id())
    restored = tune.get_checkpoint()
    if restored is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        with restored.as_directory() as directory:
            for name in CHECKPOINT_FILES:
                if (Path(directory) / name).is_file():
                    shutil.copy2(Path(directory) / name, run_dir / name)

    def report(metrics, stage):
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(stage)))

    experiment.run(config, run_dir, resume=restored is not None, progress=False, verbose=False,
                   say=lambda *_: None, callbacks=[TuneReport(run_dir, report, {"node": ray.get_runtime_context().get_node_id()})])


# ----------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------

def worker_environment(sweep):
    """Environment of Ray's worker processes: convnet's OpenMP settings
    (convnet.ENVIRONMENT_DEFAULTS) from the start, in case a library loads the process's one
    OpenMP runtime before convnet's kernels do, and OMP_NUM_THREADS = cpus_per_trial."""
    env = {name: os.environ.get(name, value) for name, value in convnet.ENVIRONMENT_DEFAULTS.items()}
    env["OMP_NUM_THREADS"] = str(sweep["cpus_per_trial"])
    return env


def param_space(sweep):
    from ray import tune

    make = {"choice": tune.choice, "grid": tune.grid_search,
            "uniform": lambda bounds: tune.uniform(*bounds), "loguniform": lambda bounds: tune.loguniform(*bounds)}
    return {key: make[kind](values) for key, (kind, values) in sweep["search"].items()}


def make_tuner(sweep, restore=False):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    trainable = tune.with_resources(tune.with_parameters(run_trial, sweep=sweep), {"cpu": sweep["cpus_per_trial"]})
    if restore:
        return tune.Tuner.restore(str(sweep_dir(sweep)), trainable, resume_unfinished=True, resume_errored=True)
    scheduler = FIFOScheduler()
    if sweep["scheduler"]["type"] == "asha":
        # max_t one past the last epoch: ASHA stops a trial that reaches max_t at once, before
        # it writes its summary.json and plots; a trial that trains all its epochs ends by itself.
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=sweep["max_epochs"] + 1,
                                  grace_period=sweep["scheduler"]["grace_period"],
                                  reduction_factor=sweep["scheduler"]["reduction_factor"])
    tune_config = tune.TuneConfig(metric=sweep["metric"], mode=sweep["mode"], num_samples=sweep["trials"],
                                  scheduler=scheduler,  # Tune ignores max_concurrent_trials with a search_alg
                                  search_alg=BasicVariantGenerator(max_concurrent=sweep["max_concurrent_trials"] or 0,
                                                                   random_state=sweep["seed"]))
    run_config = tune.RunConfig(name=sweep["name"], storage_path=sweep["storage"], verbose=1,
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=2))
    return tune.Tuner(trainable, param_space=param_space(sweep), tune_config=tune_config, run_config=run_config)


def epoch_history(run_dir, metric):
    """[(epoch, value)] of a trial's metrics.csv epoch rows."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    return [(int(row["epoch"]), float(row[metric])) for row in read_metrics(path)
            if row["kind"] == "epoch" and row[metric] != ""]


def trial_count(sweep):
    """How many trials the sweep runs: ``trials`` times the size of the grid."""
    count = sweep["trials"]
    for kind, values in sweep["search"].values():
        count *= len(values) if kind == "grid" else 1
    return count


def trial_rows(sweep, results):
    """One dict per trial of a ResultGrid: trial id, its search values, best metric over its
    epochs, epochs, status, run_dir."""
    better = max if sweep["mode"] == "max" else min
    rows = []
    for result in results:
        metrics = result.metrics or {}  # the trial's last report; Tune adds its trial_id and, once it ended, done
        trial_id = metrics.get("trial_id") or Path(result.path).name  # no report yet: Tune's folder names it
        values = {key: result.config.get(key) for key in sweep["search"]}
        run_dir = trial_dir(sweep, trial_id)
        history = epoch_history(run_dir, sweep["metric"])
        epochs = len(history)
        if result.error is not None:
            status = "error: " + str(result.error).strip().splitlines()[-1][:200]
        elif not metrics.get("done"):  # pending, running or paused when the sweep was interrupted
            status = "unfinished"
        elif epochs >= trial_config(sweep, values)["solver"]["num_epochs"]:
            status = "completed"
        else:
            status = "stopped by ASHA"
        rows.append({"trial": trial_id, **values,
                     sweep["metric"]: better(value for _, value in history) if history else None,
                     "epochs": epochs, "status": status, "run_dir": str(run_dir) if run_dir.is_dir() else ""})
    return sorted(rows, key=lambda row: str(row["trial"]))


def write_trials_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_trials(sweep, rows, path):
    """A PNG of the sweep's metric per trial over epochs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for row in rows:
        history = epoch_history(row["run_dir"], sweep["metric"]) if row["run_dir"] else []
        if history:
            label = ", ".join(f"{key.split('.')[-1]}={_short(row[key])}" for key in sweep["search"])
            ax.plot(*zip(*history), "o-", markersize=3, label=label)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel(sweep["metric"])
    ax.set_title(f"sweep {sweep['name']}")
    if ax.lines and len(ax.lines) <= 12:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _short(value):
    """A search value for a legend: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else yaml_value(value)


def best_row(sweep, rows):
    scored = [row for row in rows if row[sweep["metric"]] is not None]
    if not scored:
        return None
    return (max if sweep["mode"] == "max" else min)(scored, key=lambda row: row[sweep["metric"]])


def finish(sweep, results):
    """Write trials.csv and trials.png into the sweep directory; returns (rows, best row or None,
    whether the sweep is complete: every trial it should run ran to its end)."""
    rows = trial_rows(sweep, results)
    complete = len(rows) == trial_count(sweep) and all(row["status"] != "unfinished" for row in rows)
    if rows:
        write_trials_csv(rows, sweep_dir(sweep) / "trials.csv")
        plot_trials(sweep, rows, sweep_dir(sweep) / "trials.png")
    return rows, best_row(sweep, rows), complete
