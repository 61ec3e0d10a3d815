"""``python -m convnet.data {download,info}``: get CIFAR-10 onto disk and check it."""

import argparse
import sys
from pathlib import Path

import numpy as np

from convnet.data.cifar10 import (
    ARCHIVE_NAME,
    BATCH_FILES,
    BATCHES_DIRNAME,
    CIFAR10_URL,
    CLASS_NAMES,
    NUM_CLASSES,
    TEST_BATCH,
    TRAIN_BATCHES,
    CorruptDataError,
    find_batches_dir,
    load_batch,
)
from convnet.data.download import DownloadError, UnsafeArchiveError, download_cifar10
from convnet.data.sample import SAMPLE_PATH, load_sample


def _class_table(columns):
    """Lines of a per-class count table; ``columns`` maps a heading to labels (N,)."""
    lines = ["class       " + "".join(f"{heading:>8}" for heading in columns)]
    counts = {heading: np.bincount(y, minlength=NUM_CLASSES) for heading, y in columns.items()}
    for label, name in enumerate(CLASS_NAMES):
        lines.append(f"{label} {name:<10}" + "".join(f"{counts[h][label]:>8}" for h in columns))
    lines.append("total       " + "".join(f"{len(y):>8}" for y in columns.values()))
    return lines


def _info(root, sample):
    if sample:
        _, y_train, _, y_test = load_sample()
        lines = [f"bundled sample: {SAMPLE_PATH}"]
    else:
        batches_dir = find_batches_dir(root)
        labels = {name: load_batch(batches_dir / name)[1] for name in BATCH_FILES}  # checks every file
        y_train = np.concatenate([labels[name] for name in TRAIN_BATCHES])
        y_test = labels[TEST_BATCH]
        lines = [f"CIFAR-10 batches: {batches_dir}"]
        lines += [f"  {name:<13} {len(y):>6} images" for name, y in labels.items()]
    return lines + _class_table({"train": y_train, "test": y_test})


def main(argv=None):
    """``python -m convnet.data {download,info}``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m convnet.data",
        description="Get CIFAR-10 (the official python version) onto disk and check it.",
        epilog=f"The data root defaults to $CONVNET_DATA, else ~/.cache/convnet; the batches live in "
               f"ROOT/{BATCHES_DIRNAME}/. Offline? Put {ARCHIVE_NAME} in ROOT and run download.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    download = commands.add_parser(
        "download", help="download, verify (MD5) and extract CIFAR-10 (skipped when already there)",
        description=f"Download {CIFAR10_URL} to ROOT, check its MD5 and extract ROOT/{BATCHES_DIRNAME}/.")
    download.add_argument("--root", type=Path, default=None, help="data root (default: $CONVNET_DATA or "
                                                                   "~/.cache/convnet)")
    download.add_argument("--url", default=CIFAR10_URL, help="where to download from (default: %(default)s)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    info = commands.add_parser("info", help="check the data and print image counts per file and per class",
                               description="Load every batch (checking it) and print counts per split and class.")
    which = info.add_mutually_exclusive_group()
    which.add_argument("--root", type=Path, default=None, help="data root or batches directory (default: "
                                                                "$CONVNET_DATA or ~/.cache/convnet)")
    which.add_argument("--sample", action="store_true", help="describe the sample bundled with convnet instead")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(f"CIFAR-10 is in {download_cifar10(args.root, url=args.url, progress=not args.quiet)}")
        else:
            print("\n".join(_info(args.root, args.sample)))
    except (OSError, CorruptDataError, DownloadError, UnsafeArchiveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
