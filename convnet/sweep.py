"""Sweep hyperparameters on Ray Tune, each trial an ordinary convnet run directory.

    python -m convnet.sweep experiments/sweep_quickstart.yaml
    python -m convnet.sweep experiments/sweep_quickstart.yaml --resume
    python -m convnet.sweep experiments/sweep_quickstart.yaml --address auto

Needs the optional extra: pip install "convnet[ray]". The sweep file is described in
docs/sweeps.md; the logic lives in convnet.tune.
"""

import argparse
import os
import socket
import sys
from pathlib import Path

from convnet import tune as sweeps
from convnet.config import ConfigError

EXIT_ERROR, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m convnet.sweep",
        description="Run a hyperparameter sweep on Ray Tune as a sweep file describes. Each trial is an ordinary "
                    "run directory <storage>/<name>/runs/<trial>/; at the end <storage>/<name>/ holds trials.csv "
                    "(one row per trial) and trials.png (the metric per trial over epochs), and the best trial "
                    "is printed as a python -m convnet.train command.",
        epilog="Examples:\n"
               "  python -m convnet.sweep experiments/sweep_quickstart.yaml\n"
               "  python -m convnet.sweep experiments/sweep_quickstart.yaml --check\n"
               "  python -m convnet.sweep experiments/sweep_quickstart.yaml --resume\n"
               "  python -m convnet.sweep experiments/sweep_quickstart.yaml --address auto\n"
               "The sweep file is described in docs/sweeps.md. Needs: pip install \"convnet[ray]\".\n"
               "Ctrl-C stops the sweep and keeps its state; --resume continues it.\n"
               "Exit status: 0 done, 1 error (Ray missing, a trial failed), 2 bad sweep or experiment file\n"
               "or a Ray cluster that cannot be reached, 130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", type=Path, help="sweep YAML file")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted sweep in <storage>/<name>/ (refused if the sweep file changed)")
    parser.add_argument("--address", metavar="auto|HOST:PORT",
                        help="run on an existing Ray cluster (default: RAY_ADDRESS, else start a local one)")
    parser.add_argument("--check", action="store_true", help="validate the sweep file and its experiment, and warn if the run would refuse "
                             "its directory; run nothing")
    return parser.parse_args(argv)


def refusal(sweep, resume):
    """Why a run (with ``resume`` or without) refuses the sweep's directory as it is now; None if it does not."""
    directory = sweeps.sweep_dir(sweep)
    started = (directory / sweeps.SPEC_FILE).is_file()
    if not resume:
        if started or (directory.exists() and any(directory.iterdir())):
            return (f"{directory} already holds a sweep: continue it with --resume, or set another "
                    f"'name' (or remove the directory)")
        return None
    if not started:
        return f"--resume: no sweep to continue in {directory}"
    changed = sweeps.changed_keys(sweep)
    keys = [key for key in changed if key != sweeps.EXPERIMENT_TEXT]
    what = [f"the sweep file ({', '.join(keys)})"] if keys else []
    if sweeps.EXPERIMENT_TEXT in changed:
        what.append(f"the base experiment {sweep['experiment']}")
    if what:
        return (f"--resume: {' and '.join(what)} changed since the sweep in {directory} started; "
                f"undo the change, or give the sweep a new name")
    return None


def prepare(args):
    """The validated sweep, its directory checked against --resume (except for --check); ConfigError otherwise."""
    sweep = sweeps.load_sweep(args.sweep)
    problem = None if args.check else refusal(sweep, args.resume)
    if problem:
        raise ConfigError(problem)
    return sweep


def check_address(address):
    """Refuse an --address that is not auto, local or [ray://]HOST:PORT with a host that resolves
    (ray.init would retry an unknown host forever); ConfigError otherwise."""
    if address in (None, "auto", "local"):
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # an IPv6 address is written [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("must be auto, local or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.getaddrinfo(host, int(port))
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"the host {host!r} does not resolve ({getattr(exc, 'strerror', None) or exc})") from None


def start_ray(address, sweep):
    import ray

    ray.init(address=address, runtime_env={"env_vars": sweeps.worker_environment(sweep)},
             include_dashboard=False, configure_logging=False, log_to_driver=False)
    return ray


def main(argv=None):
    args = parse_args(argv)
    try:
        sweep = prepare(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        print(f"sweep {sweep['name']}: {sweeps.trial_count(sweep)} trials of {sweep['experiment']}, "
              f"{sweep['cpus_per_trial']} CPU(s) each, up to {sweep['max_epochs']} epochs; "
              f"{sweep['metric']} ({sweep['mode']}); results in {sweeps.sweep_dir(sweep)}")
        problem = refusal(sweep, args.resume)
        if problem:  # the file is valid; its directory is what the run would refuse
            print(f"warning: without --check this is refused (exit 2): {problem}", file=sys.stderr)
        return 0
    try:
        import ray
    except ImportError:
        print('error: sweeps run on Ray Tune, which is not installed: pip install "convnet[ray]"', file=sys.stderr)
        return EXIT_ERROR
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    where = (f"cannot reach the Ray cluster at --address {address}" if args.address
             else f"cannot reach the Ray cluster at RAY_ADDRESS={address}" if address else "cannot start Ray")
    try:
        check_address(address)
        ray = start_ray(address, sweep)
    except KeyboardInterrupt:  # e.g. waiting for a cluster that does not answer; nothing was written
        print("aborted before the sweep started", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # ConfigError, ConnectionError, ValueError, RuntimeError...: Ray names no single type
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {where}: {reason}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if not args.resume:  # only once Ray is up: a sweep that never started leaves nothing to --resume
            sweeps.save_spec(sweep)
        tuner = sweeps.make_tuner(sweep, restore=args.resume)
        results = tuner.fit()
    finally:
        ray.shutdown()
    rows, best, complete = sweeps.finish(sweep, results)
    directory = sweeps.sweep_dir(sweep)
    errors = [row for row in rows if row["status"].startswith("error")]
    print(f"sweep {sweep['name']}: {len(rows)} trials, results in {directory / 'trials.csv'} and "
          f"{directory / 'trials.png'}")
    if best is not None:
        print(f"best trial {best['trial']}: {sweep['metric']} {best[sweep['metric']]:.4f} after {best['epochs']} "
              f"epochs ({best['run_dir']}); train it with:")
        print("  " + sweeps.train_command(sweep, best))
    if not complete:
        done = sum(row["status"] != "unfinished" for row in rows)
        print(f"interrupted after {done} of {sweeps.trial_count(sweep)} trials; continue with: "
              f"python -m convnet.sweep {args.sweep} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if errors:
        print(f"error: {len(errors)} trial(s) failed (see the status column of trials.csv)", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
