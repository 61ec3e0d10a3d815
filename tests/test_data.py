"""CIFAR-10 loading, splits, download and augmentation, on small fixtures written in tmp_path.

The fixtures are built like the official files (Python-2-style pickles, protocol 2, bytes
keys, uint8 (n, 3072) rows) but hold a few rows each, a different number per file. Nothing
here reads /work/shared/data or the network.
"""

import hashlib
import io
import lzma
import os
import pickle
import runpy
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from convnet import augment, data
from convnet.data import __main__ as data_cli
from convnet.data import cifar10
from convnet.data.splits import get_CIFAR10_data

ROWS_PER_TRAIN_FILE = (5, 3, 4, 2, 6)  # 20 training rows: deliberately not the official 10,000
TEST_ROWS = 7


# ---------------------------------------------------------------------------
# fixtures: official-format batches
# ---------------------------------------------------------------------------


def write_batch(path, rows, labels, key=lambda name: name.encode()):
    """An official-style batch: a dict pickled with protocol 2, keys made by ``key`` (bytes by default)."""
    batch = {
        key("batch_label"): b"fixture batch",
        key("labels"): [int(label) for label in labels],
        key("data"): rows,
        key("filenames"): [f"{Path(path).name}_{i:05d}.png".encode() for i in range(len(rows))],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def make_batches(directory, rng, key=lambda name: name.encode()):
    """Write data_batch_1..5 and test_batch into ``directory``; return the expected
    (X_train, y_train, X_test, y_test) in NCHW and {file name: (rows, labels)}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    train_labels = rng.permutation(np.arange(sum(ROWS_PER_TRAIN_FILE)) % 10)  # two of every class
    start = 0
    for name, count in zip(data.TRAIN_BATCHES, ROWS_PER_TRAIN_FILE):
        files[name] = (rng.integers(0, 256, size=(count, 3072), dtype=np.uint8), train_labels[start : start + count])
        start += count
    files[data.TEST_BATCH] = (rng.integers(0, 256, size=(TEST_ROWS, 3072), dtype=np.uint8),
                              rng.integers(0, 10, size=TEST_ROWS))
    for name, (rows, labels) in files.items():
        write_batch(directory / name, rows, labels, key)
    X_train = np.concatenate([files[name][0] for name in data.TRAIN_BATCHES]).reshape(-1, 3, 32, 32)
    y_train = np.concatenate([files[name][1] for name in data.TRAIN_BATCHES])
    X_test = files[data.TEST_BATCH][0].reshape(-1, 3, 32, 32)
    return (X_train, y_train, X_test, files[data.TEST_BATCH][1]), files


@pytest.fixture
def cifar_root(tmp_path, rng):
    """A data root holding cifar-10-batches-py/ with fixture batches; yields (root, expected arrays)."""
    expected, _ = make_batches(tmp_path / "root" / data.BATCHES_DIRNAME, rng)
    return tmp_path / "root", expected


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def test_load_cifar10_shapes_dtypes_and_rows_from_each_file(cifar_root):
    root, (X_train, y_train, X_test, y_test) = cifar_root
    loaded = data.load_cifar10(root)
    assert [a.shape for a in loaded] == [(20, 3, 32, 32), (20,), (TEST_ROWS, 3, 32, 32), (TEST_ROWS,)]
    assert [a.dtype for a in loaded] == [np.uint8, np.int64, np.uint8, np.int64]
    for got, want in zip(loaded, (X_train, y_train, X_test, y_test)):
        np.testing.assert_array_equal(got, want)


def test_a_known_pixel_lands_at_x_n_c_h_w(tmp_path, rng):
    """A row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major."""
    _, files = make_batches(tmp_path, rng)
    rows, labels = files["data_batch_2"]
    rows[:] = 0
    c, h, w = 2, 5, 7
    rows[1, c * 1024 + h * 32 + w] = 200
    write_batch(tmp_path / "data_batch_2", rows, labels)
    X_train = data.load_cifar10(tmp_path)[0]
    n = ROWS_PER_TRAIN_FILE[0] + 1  # second row of the second file
    assert X_train[n, c, h, w] == 200
    assert X_train[n].sum() == 200
    assert X_train[n - 1 : n + 2].sum() == 200  # nothing spilled into the neighbouring rows


@pytest.mark.parametrize("key", [lambda name: name.encode(), str], ids=["bytes-keys", "str-keys"])
def test_both_key_encodings_load(tmp_path, rng, key):
    (X_train, y_train, X_test, y_test), _ = make_batches(tmp_path, rng, key=key)
    loaded = data.load_cifar10(tmp_path)
    np.testing.assert_array_equal(loaded[0], X_train)
    np.testing.assert_array_equal(loaded[3], y_test)


def test_find_batches_dir_accepts_the_root_or_the_batches_dir(cifar_root):
    root, _ = cifar_root
    assert data.find_batches_dir(root) == root / data.BATCHES_DIRNAME
    assert data.find_batches_dir(root / data.BATCHES_DIRNAME) == root / data.BATCHES_DIRNAME


def test_find_batches_dir_says_what_is_expected_and_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        data.find_batches_dir(tmp_path)
    message = str(excinfo.value)
    assert str(tmp_path / data.BATCHES_DIRNAME) in message
    assert all(name in message for name in data.BATCH_FILES)
    assert "python -m convnet.data download" in message and "download_cifar10" in message


def test_default_data_root_follows_convnet_data(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVNET_DATA", str(tmp_path))
    assert data.default_data_root() == tmp_path
    monkeypatch.delenv("CONVNET_DATA")
    assert data.default_data_root() == Path.home() / ".cache" / "convnet"


def _corrupt(path, kind, rows, labels):
    if kind == "missing":
        path.unlink()
    elif kind == "not-a-pickle":
        path.write_bytes(b"this is not a pickle at all")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "no-labels-key":
        with open(path, "wb") as f:
            pickle.dump({b"data": rows, b"batch_label": b"x"}, f, protocol=2)
    elif kind == "not-a-dict":
        with open(path, "wb") as f:
            pickle.dump([rows, list(labels)], f, protocol=2)
    elif kind == "float-data":
        write_batch(path, rows.astype(np.float32), labels)
    elif kind == "short-rows":
        write_batch(path, rows[:, :3000], labels)
    elif kind == "label-count":
        write_batch(path, rows, labels[:-1])
    elif kind == "label-too-big":
        write_batch(path, rows, np.where(np.arange(len(labels)) == 0, 10, labels))
    elif kind == "label-negative":
        write_batch(path, rows, np.where(np.arange(len(labels)) == 0, -1, labels))
    else:
        raise AssertionError(kind)


CORRUPTIONS = {
    "missing": "missing",
    "not-a-pickle": "not a readable CIFAR-10 batch",
    "truncated": "not a readable CIFAR-10 batch",
    "no-labels-key": "no 'labels' entry",
    "not-a-dict": "not the dict",
    "float-data": "uint8 array of shape (N, 3072), got float32",
    "short-rows": "got uint8 array of shape (4, 3000)",
    "label-count": "3 labels for 4 images",
    "label-too-big": "labels must lie in 0..9",
    "label-negative": "labels must lie in 0..9",
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_corrupt_batch_raises_naming_the_file(tmp_path, rng, kind):
    _, files = make_batches(tmp_path, rng)
    _corrupt(tmp_path / "data_batch_3", kind, *files["data_batch_3"])
    with pytest.raises(data.CorruptDataError) as excinfo:
        data.load_cifar10(tmp_path)
    assert "data_batch_3" in str(excinfo.value)
    assert CORRUPTIONS[kind] in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_a_pickle_that_calls_a_function_is_refused_without_running_it(tmp_path, rng):
    make_batches(tmp_path, rng)
    marker = tmp_path / "created-by-the-pickle"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": []}, f, protocol=2)
    with pytest.raises(data.CorruptDataError, match="test_batch"):
        data.load_cifar10(tmp_path)
    assert not marker.exists()


def test_a_repaired_file_loads_after_an_error(tmp_path, rng):
    """Nothing from a failed load is kept: fixing the file is enough."""
    (X_train, *_), files = make_batches(tmp_path, rng)
    (tmp_path / "data_batch_5").write_bytes(b"garbage")
    with pytest.raises(data.CorruptDataError):
        data.load_cifar10(tmp_path)
    write_batch(tmp_path / "data_batch_5", *files["data_batch_5"])
    np.testing.assert_array_equal(data.load_cifar10(tmp_path)[0], X_train)


# ---------------------------------------------------------------------------
# splits and normalisation
# ---------------------------------------------------------------------------


def small_dataset(rng, n_train=30, n_test=8):
    """uint8 (N, 3, 4, 4) images; label i % 10 so rows can be told apart by their labels too."""
    X_train = rng.integers(0, 256, size=(n_train, 3, 4, 4), dtype=np.uint8)
    X_test = rng.integers(0, 256, size=(n_test, 3, 4, 4), dtype=np.uint8)
    return X_train, np.arange(n_train) % 10, X_test, np.arange(n_test) % 10


def test_validation_rows_follow_the_training_rows(rng):
    X_train, y_train, X_test, y_test = small_dataset(rng)
    splits = data.prepare_splits(X_train, y_train, X_test, y_test, num_training=12, num_validation=5, num_test=3,
                                 normalization=None)
    np.testing.assert_array_equal(splits["X_train"], X_train[:12])
    np.testing.assert_array_equal(splits["X_val"], X_train[12:17])
    np.testing.assert_array_equal(splits["y_val"], y_train[12:17])
    np.testing.assert_array_equal(splits["X_test"], X_test[:3])
    assert splits["X_train"].dtype == np.float32 and splits["y_train"].dtype == np.int64
    assert splits["class_names"] == list(data.CLASS_NAMES) and splits["normalization"] is None


def test_none_counts_use_every_remaining_row(rng):
    X_train, y_train, X_test, y_test = small_dataset(rng)
    splits = data.prepare_splits(X_train, y_train, X_test, y_test, num_validation=4, normalization=None)
    assert (len(splits["X_train"]), len(splits["X_val"]), len(splits["X_test"])) == (26, 4, 8)
    np.testing.assert_array_equal(splits["y_val"], y_train[26:])


def test_no_validation_split_trains_on_every_image(rng):
    X_train, y_train, X_test, y_test = small_dataset(rng)
    splits = data.prepare_splits(X_train, y_train, X_test, y_test, num_validation=0, normalization="mean_image")
    assert (len(splits["X_train"]), splits["X_val"].shape, splits["y_val"].shape) == (30, (0, 3, 4, 4), (0,))
    np.testing.assert_allclose(splits["mean"], X_train.mean(axis=0), rtol=1e-6)  # every image's statistics


@pytest.mark.parametrize("counts, phrase", [
    ({"num_training": 28, "num_validation": 5}, "= 33 training images requested, but the training set from "
                                                 "FIXTURE holds only 30"),
    ({"num_validation": 31}, "leaves no training images: the training set from FIXTURE holds 30"),
    ({"num_validation": 3, "num_test": 9}, "num_test=9 test images requested, but the test set from FIXTURE "
                                            "holds only 8"),
])
def test_asking_for_too_many_rows_names_the_counts_and_source(rng, counts, phrase):
    with pytest.raises(ValueError) as excinfo:
        data.prepare_splits(*small_dataset(rng), source="FIXTURE", **counts)
    assert phrase in str(excinfo.value)


def test_mean_image_uses_training_rows_only(rng):
    X_train, y_train, X_test, y_test = small_dataset(rng)
    X_train[10:] = 255  # validation rows far from the training rows: any leak would move the mean
    splits = data.prepare_splits(X_train, y_train, X_test, y_test, num_training=10, num_validation=20)
    mean = X_train[:10].astype(np.float64).mean(axis=0)
    assert splits["mean"].shape == (3, 4, 4)
    np.testing.assert_allclose(splits["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(splits["X_train"].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(splits["X_val"], np.broadcast_to(255 - mean, (20, 3, 4, 4)), rtol=1e-5)
    np.testing.assert_allclose(splits["X_test"], X_test - mean, rtol=1e-5, atol=1e-4)


def test_per_channel_uses_training_rows_only(rng):
    X_train, y_train, X_test, y_test = small_dataset(rng)
    X_train[10:] = 255
    splits = data.prepare_splits(X_train, y_train, X_test, y_test, num_training=10, num_validation=20,
                                 normalization="per_channel", dtype=np.float64)
    mean = X_train[:10].mean(axis=(0, 2, 3)).reshape(3, 1, 1)
    std = X_train[:10].std(axis=(0, 2, 3)).reshape(3, 1, 1)
    np.testing.assert_allclose(splits["mean"], mean)
    np.testing.assert_allclose(splits["std"], std)
    assert splits["X_train"].dtype == np.float64
    np.testing.assert_allclose(splits["X_train"].mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(splits["X_train"].std(axis=(0, 2, 3)), 1)
    np.testing.assert_allclose(splits["X_test"], (X_test - mean) / std)


def test_per_channel_statistics_agree_across_chunks(rng):
    X = rng.integers(0, 256, size=(11, 3, 5, 5), dtype=np.uint8)
    mean, std = data.splits._channel_mean_std(X, rows_per_chunk=4)
    np.testing.assert_allclose(mean[:, 0, 0], X.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std[:, 0, 0], X.std(axis=(0, 2, 3)))


def test_a_constant_channel_does_not_become_nan(rng):
    X_train, y_train, X_test, y_test = small_dataset(rng)
    X_train[:, 1] = 7
    splits = data.prepare_splits(X_train, y_train, X_test, y_test, num_validation=0, normalization="per_channel")
    assert np.isfinite(splits["X_train"]).all()
    np.testing.assert_array_equal(splits["X_train"][:, 1], 0)


def test_normalize_images_repeats_the_split_normalisation(rng):
    X_train, y_train, X_test, y_test = small_dataset(rng)
    for normalization in data.NORMALIZATIONS:
        splits = data.prepare_splits(X_train, y_train, X_test, y_test, num_validation=3, normalization=normalization)
        again = data.normalize_images(X_test, splits)
        np.testing.assert_array_equal(again, splits["X_test"])


def test_bad_split_arguments_are_refused(rng):
    dataset = small_dataset(rng)
    with pytest.raises(ValueError, match="'normalization' must be one of .*did you mean 'per_channel'"):
        data.prepare_splits(*dataset, num_validation=3, normalization="per_chanel")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        data.prepare_splits(*dataset, num_validation=3, dtype=np.int32)
    with pytest.raises(ValueError, match="y_train must have shape"):
        data.prepare_splits(dataset[0], dataset[1][:-1], *dataset[2:], num_validation=3)
    with pytest.raises(ValueError, match="num_validation must be >= 0"):
        data.prepare_splits(*dataset, num_validation=-1)
    with pytest.raises(ValueError, match=r"splits_or_stats\['mean'\] must have shape \(3, 1, 1\)"):
        data.normalize_images(dataset[2], {"normalization": "per_channel", "mean": np.zeros(3), "std": np.ones(3)})


def test_get_cifar10_data_on_fixture_batches(cifar_root):
    root, (X_train, y_train, X_test, y_test) = cifar_root
    splits = data.get_cifar10_data(root, num_training=15, num_validation=5, num_test=4, normalization=None)
    np.testing.assert_array_equal(splits["X_val"], X_train[15:20])
    np.testing.assert_array_equal(splits["y_test"], y_test[:4])
    assert splits["X_train"].shape == (15, 3, 32, 32)
    with pytest.raises(ValueError) as excinfo:
        data.get_cifar10_data(root)  # CS231n's 49000 + 1000 rows; the fixture has 20
    assert "holds only 20" in str(excinfo.value) and data.BATCHES_DIRNAME in str(excinfo.value)


def test_load_CIFAR10_returns_float64_nhwc_like_cs231n(cifar_root):
    root, (X_train, y_train, X_test, y_test) = cifar_root
    Xtr, Ytr, Xte, Yte = cifar10.load_CIFAR10(root / data.BATCHES_DIRNAME)  # CS231n passes the batches directory
    assert (Xtr.shape, Xtr.dtype, Xte.shape, Xte.dtype) == ((20, 32, 32, 3), np.float64, (TEST_ROWS, 32, 32, 3),
                                                             np.float64)
    np.testing.assert_array_equal(Xtr, X_train.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(Xte, X_test.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(Ytr, y_train)
    np.testing.assert_array_equal(Yte, y_test)


def test_get_CIFAR10_data_is_cs231ns_float64_nchw_mean_subtracted(cifar_root, monkeypatch):
    root, (X_train, y_train, X_test, y_test) = cifar_root
    monkeypatch.setenv("CONVNET_DATA", str(root))
    splits = get_CIFAR10_data(num_training=12, num_validation=5, num_test=3)
    assert sorted(splits) == ["X_test", "X_train", "X_val", "y_test", "y_train", "y_val"]
    mean_image = X_train[:12].mean(axis=0)
    for name, raw in (("X_train", X_train[:12]), ("X_val", X_train[12:17]), ("X_test", X_test[:3])):
        assert splits[name].dtype == np.float64 and splits[name].shape == raw.shape  # NCHW
        np.testing.assert_allclose(splits[name], raw - mean_image, atol=1e-12)
    np.testing.assert_array_equal(splits["y_val"], y_train[12:17])
    raw = get_CIFAR10_data(num_training=12, num_validation=5, num_test=3, subtract_mean=False)
    np.testing.assert_array_equal(raw["X_train"], X_train[:12].astype(np.float64))


def test_get_CIFAR10_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNET_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as excinfo:
        get_CIFAR10_data()
    message = str(excinfo.value)
    assert str(tmp_path / data.BATCHES_DIRNAME) in message and "$CONVNET_DATA" in message
    assert "python -m convnet.data download" in message


def test_the_package_list_names_every_package():
    """pyproject.toml lists packages by hand: a subpackage missing there is missing from the wheel."""
    import tomllib

    repo = Path(__file__).parent.parent
    declared = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    present = {".".join(init.parent.relative_to(repo).parts) for init in (repo / "convnet").rglob("__init__.py")}
    assert present <= declared, f"missing from pyproject.toml: {sorted(present - declared)}"


# ---------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------


def make_archive(path, rng, extra=()):
    """A gzipped tarball holding cifar-10-batches-py/ with fixture batches (+ ``extra`` TarInfo members).

    Returns (path, md5, expected arrays)."""
    batches = path.parent / "archive-source" / data.BATCHES_DIRNAME
    expected, _ = make_batches(batches, rng)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(batches, arcname=data.BATCHES_DIRNAME)
        for member in extra:
            payload = b"evil" if member.isfile() else None
            if payload is not None:
                member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload) if payload is not None else None)
    return path, hashlib.md5(path.read_bytes()).hexdigest(), expected


def test_download_checks_the_md5_and_extracts(tmp_path, rng):
    archive, md5, expected = make_archive(tmp_path / "served.tar.gz", rng)
    root = tmp_path / "root"
    batches_dir = data.download_cifar10(root, url=archive.as_uri(), md5=md5, progress=False)
    assert batches_dir == root / data.BATCHES_DIRNAME
    for got, want in zip(data.load_cifar10(root), expected):
        np.testing.assert_array_equal(got, want)
    # The verified tarball stays (it can be extracted again); no .part or staging directory is left.
    assert sorted(p.name for p in root.iterdir()) == sorted([data.ARCHIVE_NAME, data.BATCHES_DIRNAME])


def test_a_wrong_md5_leaves_no_tarball(tmp_path, rng):
    archive, md5, _ = make_archive(tmp_path / "served.tar.gz", rng)
    root = tmp_path / "root"
    with pytest.raises(data.DownloadError) as excinfo:
        data.download_cifar10(root, url=archive.as_uri(), md5="0" * 32, progress=False)
    assert md5 in str(excinfo.value) and "0" * 32 in str(excinfo.value)
    assert list(root.iterdir()) == []


def test_an_existing_tarball_is_verified_and_extracted_without_downloading(tmp_path, rng, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    _, md5, expected = make_archive(root / data.ARCHIVE_NAME, rng)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network_allowed)
    data.download_cifar10(root, md5=md5, progress=False)
    np.testing.assert_array_equal(data.load_cifar10(root)[2], expected[2])


def test_an_existing_tarball_with_the_wrong_md5_is_reported_not_deleted(tmp_path, rng, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    _, md5, _ = make_archive(root / data.ARCHIVE_NAME, rng)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network_allowed)
    with pytest.raises(data.DownloadError) as excinfo:
        data.download_cifar10(root, md5="f" * 32, progress=False)
    assert f"has MD5 {md5}, expected {'f' * 32}" in str(excinfo.value)
    assert (root / data.ARCHIVE_NAME).is_file()  # the user's own file: reported, never deleted
    assert not (root / data.BATCHES_DIRNAME).exists()


def _no_network_allowed(*args, **kwargs):
    raise AssertionError("download_cifar10 must not touch the network here")


def _tar_member(name, kind, linkname=""):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    return member


UNSAFE_MEMBERS = {
    "dotdot": (_tar_member("cifar-10-batches-py/../../../evil", tarfile.REGTYPE), "'..'"),
    "absolute": (_tar_member("/tmp/convnet-test-evil-absolute", tarfile.REGTYPE), "absolute path"),
    "symlink": (_tar_member("cifar-10-batches-py/evil-link", tarfile.SYMTYPE, "../../evil"), "a link"),
    "hardlink": (_tar_member("cifar-10-batches-py/evil-hardlink", tarfile.LNKTYPE, "/etc/passwd"), "a link"),
    "device": (_tar_member("cifar-10-batches-py/evil-device", tarfile.CHRTYPE), "not a regular file"),
    "fifo": (_tar_member("cifar-10-batches-py/evil-fifo", tarfile.FIFOTYPE), "not a regular file"),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE_MEMBERS))
def test_unsafe_archive_members_are_refused_and_nothing_is_extracted(tmp_path, rng, kind):
    member, phrase = UNSAFE_MEMBERS[kind]
    archive, md5, _ = make_archive(tmp_path / "served.tar.gz", rng, extra=[member])
    root = tmp_path / "deep" / "root"
    with pytest.raises(data.UnsafeArchiveError) as excinfo:
        data.download_cifar10(root, url=archive.as_uri(), md5=md5, progress=False)
    assert member.name in str(excinfo.value) and phrase in str(excinfo.value)
    assert not any("evil" in p.name for p in tmp_path.rglob("*"))
    assert not Path("/tmp/convnet-test-evil-absolute").exists()
    assert sorted(p.name for p in root.iterdir()) == [data.ARCHIVE_NAME]  # no batches, no staging dir


class _FailingResponse(io.BytesIO):
    """An HTTP response that delivers one chunk, then loses the connection."""

    headers = {"Content-Length": "100000"}

    def read(self, size=-1):
        if self.tell() == 0:
            return super().read(10)
        raise ConnectionResetError("connection reset by peer")


@pytest.mark.parametrize("failure", ["url-error", "timeout", "mid-download"])
def test_network_errors_say_where_to_put_the_files(tmp_path, monkeypatch, failure):
    def fake_urlopen(url, timeout=None):
        if failure == "url-error":
            raise urllib.error.URLError("Name or service not known")
        if failure == "timeout":
            raise TimeoutError("timed out")
        return _FailingResponse(b"x" * 100)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    root = tmp_path / "root"
    with pytest.raises(data.DownloadError) as excinfo:
        data.download_cifar10(root, progress=False)
    message = str(excinfo.value)
    assert str(root / data.ARCHIVE_NAME) in message
    assert str(root / data.BATCHES_DIRNAME) in message
    assert "CONVNET_DATA" in message
    assert isinstance(excinfo.value, RuntimeError)
    assert list(root.iterdir()) == []  # the partial .part file is gone


def test_present_batches_are_not_downloaded_again(cifar_root, monkeypatch):
    root, _ = cifar_root
    monkeypatch.setattr(urllib.request, "urlopen", _no_network_allowed)
    assert data.download_cifar10(root, progress=False) == root / data.BATCHES_DIRNAME


def test_an_incomplete_batches_dir_is_not_overwritten(cifar_root, monkeypatch):
    root, _ = cifar_root
    (root / data.BATCHES_DIRNAME / "test_batch").unlink()
    monkeypatch.setattr(urllib.request, "urlopen", _no_network_allowed)
    with pytest.raises(FileExistsError, match="lacks test_batch"):
        data.download_cifar10(root, progress=False)
    with pytest.raises(data.CorruptDataError, match="test_batch missing"):
        data.load_cifar10(root)


# ---------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------


@pytest.fixture
def images(rng):
    """Distinct, strictly positive float32 pixels: a zero can only come from padding or cutout."""
    return rng.uniform(1.0, 2.0, size=(32, 3, 8, 9)).astype(np.float32)


def test_the_same_seed_gives_the_same_batch(images):
    def run(seed):
        return augment.augment_batch(images, np.random.default_rng(seed), crop_padding=2, cutout_size=3)

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))
    assert run(7).dtype == np.float32 and run(7).shape == images.shape


def test_flip_mirrors_about_half_of_the_images(images, rng):
    out = augment.random_flip(images, rng)
    flipped = [np.array_equal(o, x[:, :, ::-1]) for o, x in zip(out, images)]
    kept = [np.array_equal(o, x) for o, x in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image is exactly one of the two
    assert 0 < sum(flipped) < len(images)


def test_crop_with_no_padding_is_the_identity(images, rng):
    out = augment.random_crop(images, rng, padding=0)
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0, 0] = -1
    assert images[0, 0, 0, 0] != -1  # a copy, never the caller's array


def test_crop_takes_a_window_of_the_padded_image(images, rng):
    padding = 2
    out = augment.random_crop(images, rng, padding=padding)
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    H, W = images.shape[2:]
    offsets = set()
    for n in range(len(images)):
        matches = [(i, j) for i in range(2 * padding + 1) for j in range(2 * padding + 1)
                   if np.array_equal(out[n], padded[n, :, i : i + H, j : j + W])]
        assert len(matches) == 1, f"image {n} is not a window of its padded image"
        offsets.add(matches[0])
    assert len(offsets) > 1  # each image gets its own offset ...
    assert any(i != j for i, j in offsets)  # ... drawn independently along each axis


def test_cutout_zeroes_one_clipped_square_in_every_channel(images, rng):
    size = 4
    out = augment.cutout(images, rng, size)
    H, W = images.shape[2:]
    saw_full_square = False
    for n in range(len(images)):
        zero = out[n] == 0
        assert (zero == zero[0]).all(), "the same pixels are zeroed in every channel"
        rows, cols = np.flatnonzero(zero[0].any(axis=1)), np.flatnonzero(zero[0].any(axis=0))
        assert len(rows) and len(cols)
        # a solid rectangle of consecutive rows and columns ...
        assert zero[0].sum() == len(rows) * len(cols) == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        # ... that is the size x size square, cut only where it meets a border
        assert len(rows) == size or (rows[0] == 0 or rows[-1] == H - 1) and len(rows) < size
        assert len(cols) == size or (cols[0] == 0 or cols[-1] == W - 1) and len(cols) < size
        saw_full_square |= len(rows) * len(cols) == size * size
        np.testing.assert_array_equal(out[n][~zero], images[n][~zero])
    assert saw_full_square


def test_augment_batch_applies_crop_flip_cutout_in_that_order(images):
    out = augment.augment_batch(images, np.random.default_rng(3), crop_padding=2, flip=True, cutout_size=3)
    rng = np.random.default_rng(3)
    by_hand = augment.cutout(augment.random_flip(augment.random_crop(images, rng, 2), rng), rng, 3)
    np.testing.assert_array_equal(out, by_hand)
    plain = augment.augment_batch(images, np.random.default_rng(3), crop_padding=0, flip=False)
    np.testing.assert_array_equal(plain, images)


@pytest.mark.parametrize("call, error, name", [
    (lambda X, rng: augment.random_crop(X[0], rng), ValueError, "X must be 4-D"),
    (lambda X, rng: augment.random_crop(X, rng, padding=-1), ValueError, "padding must be >= 0"),
    (lambda X, rng: augment.cutout(X, rng, size=-2), ValueError, "size must be >= 0"),
    (lambda X, rng: augment.augment_batch(X, rng, crop_padding=1.5), TypeError, "crop_padding must be an integer"),
    (lambda X, rng: augment.augment_batch(X, rng, cutout_size=-1), ValueError, "cutout_size must be >= 0"),
    (lambda X, rng: augment.augment_batch(X, rng, flip="yes"), TypeError, "flip must be True, False or 'alternating'"),
    (lambda X, rng: augment.random_flip(X, 42), TypeError, "rng must be a np.random.Generator"),
])
def test_bad_augmentation_arguments_are_refused(images, rng, call, error, name):
    with pytest.raises(error, match=name):
        call(images, rng)


# ---------------------------------------------------------------------------
# the bundled sample and the command line
# ---------------------------------------------------------------------------


def test_the_bundled_sample_is_balanced_uint8_nchw():
    X_train, y_train, X_test, y_test = data.load_sample()
    assert X_train.shape == (2700, 3, 32, 32) and X_test.shape == (500, 3, 32, 32)
    assert X_train.dtype == X_test.dtype == np.uint8 and y_train.dtype == y_test.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), [270] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [50] * 10)
    np.testing.assert_array_equal(y_train[:20], np.tile(np.arange(10), 2))  # class-interleaved rows
    assert X_train.std() > 30  # real images, not a blank placeholder
    splits = data.get_sample_data()
    assert (len(splits["X_train"]), len(splits["X_val"]), len(splits["X_test"])) == (2200, 500, 500)
    np.testing.assert_array_equal(np.bincount(splits["y_val"], minlength=10), [50] * 10)


def test_build_sample_picks_the_first_images_of_each_class(tmp_path, rng):
    (X_train, y_train, _, _), _ = make_batches(tmp_path / "source", rng)  # two training images per class
    test_rows, test_labels = rng.integers(0, 256, size=(10, 3072), dtype=np.uint8), rng.permutation(10)
    write_batch(tmp_path / "source" / "test_batch", test_rows, test_labels)
    build_sample = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "build_sample.py"))
    out = tmp_path / "sample.npz.xz"
    args = [str(tmp_path / "source"), str(out), "--test-per-class", "1"]
    assert build_sample["main"](args + ["--train-per-class", "2"]) == 0
    with lzma.open(out) as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as arrays:
        sample = {key: arrays[key] for key in arrays.files}
    np.testing.assert_array_equal(sample["y_train"], np.tile(np.arange(10), 2))  # class-interleaved
    np.testing.assert_array_equal(sample["y_test"], np.arange(10))
    np.testing.assert_array_equal(sample["X_test"], test_rows[np.argsort(test_labels)].reshape(10, 3, 32, 32))
    # source_rows says where each image came from, and those are the first two rows of each class
    file_starts = np.cumsum((0,) + ROWS_PER_TRAIN_FILE)
    taken = [file_starts[f] + r for f, r in sample["source_rows"][:20]]
    np.testing.assert_array_equal(sample["X_train"], X_train[taken])
    first_two = np.concatenate([np.flatnonzero(y_train == c)[:2] for c in range(10)])
    assert sorted(taken) == sorted(first_two)
    assert list(sample["source_files"][sample["source_rows"][20:, 0]]) == ["test_batch"] * 10
    with pytest.raises(SystemExit, match="only 2 images of class"):
        build_sample["main"](args + ["--train-per-class", "3"])


def test_cli_help_exits_zero():
    result = subprocess.run([sys.executable, "-m", "convnet.data", "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "download" in result.stdout and "info" in result.stdout


def test_cli_info_counts_per_file_and_class(cifar_root, capsys):
    root, (_, y_train, _, y_test) = cifar_root
    assert data_cli.main(["info", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if "data_batch_5" in line).split() == ["data_batch_5", "6", "images"]
    airplane = next(line for line in out.splitlines() if "airplane" in line).split()
    assert airplane[-2:] == [str((y_train == 0).sum()), str((y_test == 0).sum())]
    assert out.splitlines()[-1].split() == ["total", "20", str(TEST_ROWS)]


def test_cli_reports_missing_data_without_a_traceback(tmp_path, capsys):
    assert data_cli.main(["info", "--root", str(tmp_path)]) == 1
    assert "python -m convnet.data download" in capsys.readouterr().err
