"""Sweeps: the sweep file's validation (always), and real Ray Tune sweeps (when ray is installed)."""

import csv
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from convnet import sweep as sweep_cli
from convnet import train
from convnet import tune as sweeps
from tests.runs import TINY

SEARCH = {"optim.learning_rate": {"grid": [0.1, 0.01]}}


def write_sweep(directory, name="tiny_sweep", **changes):
    """A 2-trial sweep of the tiny experiment (4 epochs of 480 images each: long enough to be interrupted
    part-way) in directory; returns its path."""
    experiment = dict(TINY, solver={**TINY["solver"], "num_epochs": 4})
    (directory / "tiny.yaml").write_text(yaml.safe_dump(experiment))
    spec = {"name": name, "experiment": "tiny.yaml", "set": ["data.num_training=480"], "search": SEARCH,
            "trials": 1, "metric": "val_acc", "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
            "cpus_per_trial": 1, "max_concurrent_trials": 1, "storage": str(directory / "sweeps"), **changes}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def refused(capsys, path, *flags):
    """The one-line error of `convnet.sweep path --check` (exit 2 asserted)."""
    assert sweep_cli.main([str(path), "--check", *flags]) == sweep_cli.EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# ----------------------------------------------------------------------
# the sweep file (no Ray needed)
# ----------------------------------------------------------------------

def test_check_accepts_the_quickstart_sweep_and_counts_its_trials(capsys):
    root = Path(__file__).resolve().parents[1]
    assert sweep_cli.main([str(root / "experiments" / "sweep_quickstart.yaml"), "--check"]) == 0
    out = capsys.readouterr().out
    spec = sweeps.load_sweep(root / "experiments" / "sweep_quickstart.yaml")
    assert f"sweep sweep_quickstart: {spec['trials']} trials" in out


def test_grid_times_trials_is_counted(tmp_path, capsys):
    path = write_sweep(tmp_path, trials=3, search={**SEARCH, "optim.momentum": {"uniform": [0.5, 0.9]}})
    assert sweep_cli.main([str(path), "--check"]) == 0
    assert "6 trials" in capsys.readouterr().out


def test_unknown_sweep_key_is_named_with_did_you_mean(tmp_path, capsys):
    path = write_sweep(tmp_path, trails=2)
    assert "sweep key 'trails': unknown; did you mean 'trials'?" in refused(capsys, path)


def test_unknown_search_key_is_named_with_did_you_mean(tmp_path, capsys):
    path = write_sweep(tmp_path, search={"optim.learnig_rate": {"choice": [0.1]}})
    err = refused(capsys, path)
    assert "search.optim.learnig_rate" in err and "did you mean 'learning_rate'?" in err


def test_every_search_value_is_checked_against_the_experiment(tmp_path, capsys):
    err = refused(capsys, write_sweep(tmp_path, search={"optim.rule": {"choice": ["adam", "adma"]}}))
    assert "'adma'" in err and "did you mean 'adam'?" in err
    # uniform gives floats: an integer key refuses it before any trial starts
    err = refused(capsys, write_sweep(tmp_path, search={"solver.batch_size": {"uniform": [16, 64]}}))
    assert "search.solver.batch_size" in err and "integer" in err
    err = refused(capsys, write_sweep(tmp_path, search={"optim.learning_rate": {"uniform": [-1.0, 0.1]}}))
    assert "optim.learning_rate" in err and "-1.0" in err


@pytest.mark.parametrize("spec, words", [
    ({"optim.learning_rate": {"loguniform": [0, 0.1]}}, "low > 0"),
    ({"optim.learning_rate": {"uniform": [0.1, 0.01]}}, "low < high"),
    ({"optim.learning_rate": {"normal": [0.1, 0.01]}}, "did you mean"),
    ({"optim.learning_rate": {"choice": []}}, "non-empty list"),
    ({"optim.learning_rate": 0.1}, "must be one of {choice"),
    ({}, "at least one config key"),
])
def test_malformed_search_entries_are_refused(tmp_path, capsys, spec, words):
    assert words in refused(capsys, write_sweep(tmp_path, search=spec))


def test_scheduler_and_metric_are_checked(tmp_path, capsys):
    assert "did you mean 'asha'?" in refused(capsys, write_sweep(tmp_path, scheduler={"type": "asah"}))
    err = refused(capsys, write_sweep(tmp_path, scheduler={"type": "asha", "grace_periods": 1}))
    assert "did you mean 'grace_period'?" in err
    assert "at most the trials' num_epochs (4)" in refused(
        capsys, write_sweep(tmp_path, scheduler={"type": "asha", "grace_period": 5}))
    assert "did you mean 'val_acc'?" in refused(capsys, write_sweep(tmp_path, metric="val_accuracy"))
    assert sweeps.load_sweep(write_sweep(tmp_path, metric="loss"))["mode"] == "min"
    assert sweeps.load_sweep(write_sweep(tmp_path, scheduler="none"))["scheduler"] == {"type": "none"}


def test_fixed_overrides_and_experiment_are_checked(tmp_path, capsys):
    assert "did you mean 'num_epochs'?" in refused(capsys, write_sweep(tmp_path, set=["solver.num_epoch=2"]))
    assert "does not exist" in refused(capsys, write_sweep(tmp_path, experiment="missing.yaml"))


def test_best_command_trains_the_trial_configuration(tmp_path, monkeypatch):
    spec = sweeps.load_sweep(write_sweep(tmp_path, search={**SEARCH, "model.layers.0": {"choice": [
        {"type": "conv_bn_relu", "filters": 6}]}}))
    values = {"optim.learning_rate": 0.01, "model.layers.0": {"type": "conv_bn_relu", "filters": 6}}
    words = shlex.split(sweeps.train_command(spec, values))
    assert words[:3] == ["python", "-m", "convnet.train"]
    monkeypatch.chdir(Path.cwd())  # the command's experiment path is relative to here
    config = train.resolve_config(train.parse_args(words[3:]))
    trial = sweeps.trial_config(spec, values)
    assert config["optim"] == trial["optim"] and config["model"] == trial["model"]
    assert config["data"]["num_training"] == 480 and trial["threads"] == 1


def test_resume_refuses_a_changed_sweep_file(tmp_path, capsys):
    path = write_sweep(tmp_path)
    sweeps.save_spec(sweeps.load_sweep(path))  # as a started sweep leaves it
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "trials": 2}))
    assert sweep_cli.main([str(path), "--resume"]) == sweep_cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "changed" in err and "trials" in err
    path.write_text(yaml.safe_dump(spec))
    (tmp_path / "tiny.yaml").write_text((tmp_path / "tiny.yaml").read_text().replace("seed: 1", "seed: 2"))
    assert sweep_cli.main([str(path), "--resume"]) == sweep_cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"the base experiment {tmp_path / 'tiny.yaml'} changed since the sweep" in err
    assert "experiment_text" not in err
    path.write_text(yaml.safe_dump({**spec, "trials": 2}))  # both changed: both are named
    assert sweep_cli.main([str(path), "--resume"]) == sweep_cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "the sweep file (trials) and the base experiment" in err and "experiment_text" not in err


def test_a_started_sweep_is_not_started_again_and_resume_needs_one(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert sweep_cli.main([str(path), "--resume"]) == sweep_cli.EXIT_CONFIG
    assert "no sweep to continue" in capsys.readouterr().err
    sweeps.save_spec(sweeps.load_sweep(path))
    assert sweep_cli.main([str(path)]) == sweep_cli.EXIT_CONFIG
    assert "--resume" in capsys.readouterr().err


def test_without_ray_the_command_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert sweep_cli.main([str(write_sweep(tmp_path))]) == sweep_cli.EXIT_ERROR
    assert 'pip install "convnet[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


def test_convnet_imports_no_ray():
    code = "import sys, convnet.sweep, convnet.tune, convnet.train; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# ----------------------------------------------------------------------
# real sweeps on Ray Tune
# ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_env():
    """Environment for sweep subprocesses: Ray's session files in a temporary directory of
    their own (short: Ray's socket paths must fit 107 characters), removed afterwards, with a
    check that no Ray process of these tests is left running."""
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": temp, "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_ADDRESS", "OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY"):  # the last two: as a user's shell
        env.pop(name, None)
    yield env
    left = ray_processes(temp)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"Ray processes left running: {left}"


def ray_processes(temp):
    """Pids of processes whose command line or environment names the temporary directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if temp.encode() in text:
            pids.append(int(entry.name))
    return pids


def run_sweep(path, env, *flags):
    return subprocess.run([sys.executable, "-m", "convnet.sweep", str(path), *flags], env=env, cwd=path.parent,
                          capture_output=True, text=True, timeout=300, check=False)


def histories(sweep_dir):
    """{trial index: [(epoch, loss, train_acc, val_acc)]} from the trials' metrics.csv files."""
    result = {}
    for run_dir in sorted((sweep_dir / "runs").iterdir()):
        rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
        result[run_dir.name.rsplit("_", 1)[1]] = [(r["epoch"], r["loss"], r["train_acc"], r["val_acc"])
                                                  for r in rows if r["kind"] == "epoch"]
    return result


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_env):
    """An uninterrupted 2-trial sweep: (directory, completed process)."""
    directory = tmp_path_factory.mktemp("sweep")
    done = run_sweep(write_sweep(directory), ray_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not ray_processes(ray_env["RAY_TMPDIR"])  # the local cluster went down with the command
    return directory / "sweeps" / "tiny_sweep", done


def test_sweep_writes_trials_csv_plot_and_best_command(finished):
    sweep_dir, done = finished
    rows = list(csv.DictReader((sweep_dir / "trials.csv").read_text().splitlines()))
    assert [float(row["optim.learning_rate"]) for row in rows] == [0.1, 0.01]
    for row in rows:
        history = [float(value) for _, _, _, value in histories(sweep_dir)[row["trial"].rsplit("_", 1)[1]]]
        assert int(row["epochs"]) == len(history) >= 1 and float(row["val_acc"]) == max(history)
        # ASHA (grace 1, one trial at a time) stops the second trial after epoch 1 iff it is behind the first
        assert row["status"] == ("completed" if len(history) == 4 else "stopped by ASHA")
        if row["status"] == "completed":
            assert (Path(row["run_dir"]) / "summary.json").is_file()
    assert (sweep_dir / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = max(rows, key=lambda row: float(row["val_acc"]))
    lines = done.stdout.splitlines()
    command = lines[lines.index(next(line for line in lines if line.startswith("best trial"))) + 1].strip()
    assert command.startswith("python -m convnet.train tiny.yaml --set data.num_training=480")
    assert f"--set optim.learning_rate={best['optim.learning_rate']}" in command


def test_each_epoch_is_reported_with_its_checkpoint_and_the_trial_cpus(finished):
    sweep_dir, _ = finished
    for result_file in sweep_dir.glob("run_trial_*/result.json"):
        results = [yaml.safe_load(line) for line in result_file.read_text().splitlines()]
        assert [r["epoch"] for r in results] == list(range(1, len(results) + 1))
        assert all(r["threads"] == 1 for r in results)
        checkpoints = sorted(result_file.parent.glob("checkpoint_*"))
        assert checkpoints and (checkpoints[-1] / "checkpoint.npz").is_file()
    assert len(list(sweep_dir.glob("run_trial_*/result.json"))) == 2


def test_interrupt_and_resume_give_the_uninterrupted_history(tmp_path, finished, ray_env):
    sweep_dir, _ = finished
    path = write_sweep(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "convnet.sweep", str(path)], env=ray_env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Tune's driver writes a trial's result.json as it takes in a report, in the same step that
    # records the report's checkpoint: from then on a restore resumes trial 0 from that checkpoint.
    results = tmp_path / "sweeps" / "tiny_sweep"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(path.stat().st_size for path in
                                                  results.glob("run_trial_*_00000_*/result.json")):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == sweep_cli.EXIT_INTERRUPTED, out[-3000:]
    assert "--resume" in out
    interrupted = histories(tmp_path / "sweeps" / "tiny_sweep")
    assert sum(map(len, interrupted.values())) < sum(map(len, histories(sweep_dir).values()))
    done = run_sweep(path, ray_env, "--resume")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    resumed = histories(tmp_path / "sweeps" / "tiny_sweep")
    assert resumed == histories(sweep_dir)
    # a trial stopped part-way went on from its Tune checkpoint, not from the start
    cut = [trial for trial, history in interrupted.items() if 0 < len(history) < len(resumed[trial])]
    assert cut
    for trial in cut:
        (run_dir,) = (tmp_path / "sweeps" / "tiny_sweep" / "runs").glob(f"*_{trial}")
        assert yaml.safe_load((run_dir / "summary.json").read_text())["resumed_from"] is not None


def test_trials_run_on_both_nodes_of_a_two_node_cluster(tmp_path, ray_env, monkeypatch):
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", temp)
    for name in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY"):  # as a cluster node's plain environment
        monkeypatch.delenv(name, raising=False)
    # Ray rewrites 127.0.0.1 to this machine's address; another loopback address stays on the loopback.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.2"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.2")
        cluster.wait_for_nodes()
        path = write_sweep(tmp_path, max_concurrent_trials=None, scheduler="none")
        done = run_sweep(path, {**ray_env, "RAY_TMPDIR": temp}, "--address", cluster.address)
    finally:
        cluster.shutdown()
    left = ray_processes(temp)
    shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"Ray processes left running: {left}"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sweep_dir = tmp_path / "sweeps" / "tiny_sweep"
    reports = [yaml.safe_load(line) for result in sweep_dir.glob("run_trial_*/result.json")
               for line in result.read_text().splitlines()]
    assert len({report["node"] for report in reports}) == 2  # one CPU per node, two one-CPU trials at once
    # Ray's workers import numpy before convnet: convnet's OpenBLAS setting reached them through the job's environment
    assert all(report["threads"] == 1 for report in reports)
    rows = list(csv.DictReader((sweep_dir / "trials.csv").read_text().splitlines()))
    assert [row["status"] for row in rows] == ["completed", "completed"]


def test_a_failed_trial_is_a_row_with_its_error_and_the_sweep_exits_1(tmp_path, ray_env):
    path = write_sweep(tmp_path, search={"optim.learning_rate": {"grid": [0.05, 1e6]}}, scheduler="none")
    done = run_sweep(path, ray_env)
    assert done.returncode == sweep_cli.EXIT_ERROR, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 trial(s) failed" in done.stderr
    ok, failed = csv.DictReader((tmp_path / "sweeps" / "tiny_sweep" / "trials.csv").read_text().splitlines())
    assert ok["status"] == "completed" and failed["status"].startswith("error: ") and "TrainingDiverged" in failed["status"]
    assert failed["epochs"] == "0" and failed["val_acc"] == "" and Path(failed["run_dir"]).is_dir()
    assert "--set optim.learning_rate=0.05" in done.stdout  # the best trial is the one that trained


def test_ctrl_c_while_ray_starts_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")

    def interrupted(address, sweep):  # as a Ctrl-C while ray.init waits for a cluster that does not answer
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_cli, "start_ray", interrupted)
    assert sweep_cli.main([str(write_sweep(tmp_path)), "--address", "127.0.0.2:9"]) == sweep_cli.EXIT_INTERRUPTED
    assert "aborted before the sweep started" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()  # so a later run is not told to --resume a sweep that never ran


def unreachable(capsys, tmp_path, monkeypatch, flags, raised=None):
    """The one-line error (exit 2) of a sweep whose Ray cluster cannot be reached; start_ray raises ``raised``
    (None: it must not be called at all)."""
    pytest.importorskip("ray")

    def start_ray(address, sweep):
        assert raised is not None, f"ray.init was called with the address {address!r}"
        raise raised

    monkeypatch.setattr(sweep_cli, "start_ray", start_ray)
    assert sweep_cli.main([str(write_sweep(tmp_path)), *flags]) == sweep_cli.EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "sweeps").exists()
    return err


@pytest.mark.parametrize("raised", [ConnectionError("Could not find any running Ray instance.\nPlease start one"),
                                    ValueError("bad address"), RuntimeError("Ray failed")])
def test_a_cluster_ray_cannot_reach_is_one_line_naming_the_address(tmp_path, capsys, monkeypatch, raised):
    err = unreachable(capsys, tmp_path, monkeypatch, ["--address", "auto"], raised)
    assert "--address auto" in err and str(raised).splitlines()[0] in err


def test_the_address_from_ray_address_is_named_as_such(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    err = unreachable(capsys, tmp_path, monkeypatch, [], ConnectionError("no cluster"))
    assert "RAY_ADDRESS=auto" in err and "no cluster" in err


@pytest.mark.parametrize("address, words", [
    ("notahost.invalid:1", "'notahost.invalid' does not resolve"),
    ("10.0.0.5", "HOST:PORT"), ("localhost:port", "HOST:PORT"), ("localhost:70000", "HOST:PORT"),
])
def test_an_address_that_is_not_host_port_or_does_not_resolve_is_refused_before_ray_starts(
        tmp_path, capsys, monkeypatch, address, words):
    err = unreachable(capsys, tmp_path, monkeypatch, ["--address", address])
    assert f"--address {address}" in err and words in err


def test_well_formed_addresses_are_accepted():
    for address in (None, "auto", "local", "127.0.0.1:6379", "localhost:6379", "ray://localhost:10001", "[::1]:6379"):
        sweep_cli.check_address(address)


@pytest.mark.parametrize("text, words", [
    ("solver:\n  num_epochs: [1\n", "is not valid YAML"),
    ("- solver\n- model\n", "must hold a YAML mapping, got list"),
    ("seed: 1\nseed: 2\n", "key 'seed' is written twice"),
])
def test_a_broken_experiment_file_is_one_line_from_the_command(tmp_path, text, words):
    path = write_sweep(tmp_path)
    (tmp_path / "tiny.yaml").write_text(text)
    done = subprocess.run([sys.executable, "-m", "convnet.sweep", str(path), "--check"],
                          capture_output=True, text=True, cwd=tmp_path)
    err = done.stderr.strip()
    assert done.returncode == sweep_cli.EXIT_CONFIG and "\n" not in err and "Traceback" not in err
    assert err.startswith("error: sweep key 'experiment'") and str(tmp_path / "tiny.yaml") in err and words in err


@pytest.mark.parametrize("text, words", [("name: [x\n", "is not valid YAML"),
                                         ("- 1\n", "must hold a YAML mapping, got list")])
def test_a_broken_sweep_file_is_one_line(tmp_path, capsys, text, words):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    err = refused(capsys, path)
    assert f"sweep file {path}" in err and words in err


def test_a_trial_has_one_run_directory_and_one_override_list(tmp_path):
    spec = sweeps.load_sweep(write_sweep(tmp_path))
    values = {"optim.learning_rate": 0.01}
    assert sweeps.trial_dir(spec, "t_1") == tmp_path / "sweeps" / "tiny_sweep" / "runs" / "t_1"
    assert sweeps.trial_overrides(spec, values) == ["data.num_training=480", "optim.learning_rate=0.01"]
    words = shlex.split(sweeps.train_command(spec, values))
    assert words[5::2] == sweeps.trial_overrides(spec, values) and set(words[4::2]) == {"--set"}


def test_check_warns_about_a_directory_the_run_refuses(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert sweep_cli.main([str(path), "--check"]) == 0
    assert capsys.readouterr().err == ""  # a fresh directory: nothing to warn about
    assert sweep_cli.main([str(path), "--check", "--resume"]) == 0
    assert "warning: " in capsys.readouterr().err.strip().splitlines()[0]  # --resume with nothing to continue
    sweeps.save_spec(sweeps.load_sweep(path))
    assert sweep_cli.main([str(path), "--check"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: ") and "already holds a sweep" in err and "\n" not in err
    assert sweep_cli.main([str(path), "--check", "--resume"]) == 0
    assert capsys.readouterr().err == ""  # the run would continue it
