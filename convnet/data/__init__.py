"""CIFAR-10: download and verify, load into memory, split and normalise; the bundled sample.

Images are uint8 arrays of shape (N, 3, 32, 32) (NCHW, the layout of the layers), labels
int64 (N,) in 0..9 (see :data:`CLASS_NAMES`). The data lives in ``<root>/cifar-10-batches-py/``
in the official "python version" layout, with ``root`` = ``$CONVNET_DATA`` or
``~/.cache/convnet``. Get it with ``python -m convnet.data download`` (or
:func:`download_cifar10`), or copy the official files there by hand.

One module per job, all names importable from here:

- :mod:`convnet.data.cifar10`: where the files live, reading and checking them;
- :mod:`convnet.data.download`: download, MD5 check, safe extraction;
- :mod:`convnet.data.splits`: training/validation/test splits and their normalisation;
- :mod:`convnet.data.sample`: the sample bundled with convnet;
- ``python -m convnet.data`` (:mod:`convnet.data.__main__`): the command line.

Augmentation lives in :mod:`convnet.augment`. CS231n's spellings (``load_CIFAR10``,
``get_CIFAR10_data``, float64 as CS231n returns them) sit beside the functions they adapt
but are imported only through :mod:`convnet.cs231n.data_utils`.
"""

from convnet.data.cifar10 import (
    ARCHIVE_NAME,
    BATCH_FILES,
    BATCHES_DIRNAME,
    CIFAR10_MD5,
    CIFAR10_URL,
    CLASS_NAMES,
    IMAGE_SHAPE,
    NUM_CLASSES,
    TEST_BATCH,
    TRAIN_BATCHES,
    CorruptDataError,
    default_data_root,
    find_batches_dir,
    load_batch,
    load_cifar10,
)
from convnet.data.download import (
    DOWNLOAD_CHUNK_BYTES,
    DownloadError,
    UnsafeArchiveError,
    download_cifar10,
    extract_archive,
    file_md5,
)
from convnet.data.sample import SAMPLE_PATH, get_sample_data, load_sample
from convnet.data.splits import (
    NORMALIZATIONS,
    get_cifar10_data,
    normalization_stats,
    normalize_images,
    prepare_splits,
)

__all__ = [
    "ARCHIVE_NAME", "BATCHES_DIRNAME", "BATCH_FILES", "CIFAR10_MD5", "CIFAR10_URL", "CLASS_NAMES",
    "DOWNLOAD_CHUNK_BYTES", "IMAGE_SHAPE", "NORMALIZATIONS", "NUM_CLASSES", "SAMPLE_PATH", "TEST_BATCH",
    "TRAIN_BATCHES", "CorruptDataError", "DownloadError", "UnsafeArchiveError", "default_data_root",
    "download_cifar10", "extract_archive", "file_md5", "find_batches_dir", "get_cifar10_data",
    "get_sample_data", "load_batch", "load_cifar10", "load_sample",
    "normalization_stats", "normalize_images", "prepare_splits",
]
