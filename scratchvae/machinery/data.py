"""MNIST and Fashion-MNIST: find the files, read them, cut splits, draw batches.

The lecture's running example is "generate realistic-looking MNIST digits": each x is a
28 x 28 grey image, flattened here to a vector of D = 784 pixels, and the decoder outputs
"parameters for 28x28 Bernoulli variables". This module turns files on disk into those x.

Reading order:

1. ``read_idx``        -- the IDX file format, validated byte by byte.
2. ``find_dataset``    -- where the files are: explicit directory > $SCRATCHVAE_DATA_DIR >
                          user cache > system directory (Debian) > download into the cache.
3. ``parse_split`` and ``load`` -- "train", "test", "test[:9000]", "test[9000:]" -> a ``Split``.
4. ``iterate_batches`` -- uint8 images -> float32 batches in [0, 1], optionally binarised.
5. ``add_data_arguments`` -- the command-line flags for all of the above.

Images stay uint8 in memory (60,000 x 784 bytes = 47 MB, a quarter of float32); each batch
is converted to float32 when it is drawn. Every problem with the data raises ``DataError``
with one message that names the file or directory and says what is wrong.
"""
import argparse
import gzip
import hashlib
import http.client
import math
import os
import re
import sys
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import file_mode
from ..vae import _is_count


class DataError(ValueError):
    """A data file or directory is missing, corrupt, or does not hold what was asked for."""


# ---------------------------------------------------------------------------------------
# 1. The IDX format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS" at the bottom)
#
#   bytes 0-1   0x00 0x00
#   byte  2     element type code (IDX_TYPES below)
#   byte  3     number of dimensions, ndim
#   then        ndim sizes, each a big-endian uint32
#   then        prod(sizes) elements, big-endian, C order (last index fastest)
# ---------------------------------------------------------------------------------------

IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 18          # decompress 256 KiB at a time straight into the result array
MAX_IDX_BYTES = 1 << 32       # refuse headers that promise more than 4 GiB


def read_idx(path):
    """Read one IDX file (raw, or gzip-compressed when the name ends in ``.gz``).

    The header is checked (magic, type code, dimensions) and the payload must have exactly
    prod(dims) elements: a short file or trailing bytes raise ``DataError``, never a
    silently truncated array. The result is allocated once at its final size and the
    file is decompressed into it, so loading costs little more memory than the result.

    Shapes:  header dims (d1, ..., dn) -> array of shape (d1, ..., dn), native byte order
             (uint8 for MNIST images (N, 28, 28) and labels (N,)).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    compressed = path.name.endswith(".gz")
    try:
        with open(path, "rb") as raw:
            first = raw.read(4)
        if not first:
            raise DataError(f"{path}: the file is empty (0 bytes)")
        if compressed and first[:2] != GZIP_MAGIC:
            hint = " (it looks like an uncompressed IDX file: drop the .gz from its name)" \
                if first[:2] == b"\0\0" else ""
            raise DataError(f"{path}: not gzip-compressed although the name ends in .gz; "
                            f"first bytes are {first.hex(' ')}{hint}")
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            return _read_idx_stream(f, path)
    except PermissionError as e:                   # not the file's fault: say so, not "corrupt"
        raise DataError(f"{path}: permission denied: this user may not read the file "
                        f"({e.strerror})") from None
    except (OSError, EOFError, zlib.error) as e:   # gzip.BadGzipFile is an OSError
        what = "truncated or corrupt gzip stream" if compressed else "cannot read the file"
        raise DataError(f"{path}: {what} ({e})") from e


def _read_idx_stream(f, path):
    """Parse the header, then read the payload into a preallocated array (see read_idx)."""
    head = f.read(4)
    if len(head) < 4:
        raise DataError(f"{path}: truncated header: {len(head)} of 4 magic-number bytes")
    if head[0] != 0 or head[1] != 0:
        hint = " (it looks gzip-compressed: name it *.gz)" if head[:2] == GZIP_MAGIC else ""
        raise DataError(f"{path}: wrong magic number 0x{head.hex()}: an IDX file starts "
                        f"with two zero bytes, a type code and a dimension count{hint}")
    type_code, ndim = head[2], head[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataError(f"{path}: unknown IDX element type code 0x{type_code:02X} "
                        f"(known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: the header declares 0 dimensions")
    dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path}: truncated header: {ndim} dimensions need {4 * ndim} bytes "
                        f"of sizes, only {len(dims_bytes)} present")
    dims = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    dtype = IDX_TYPES[type_code]
    n_bytes = math.prod(dims) * dtype.itemsize
    shape_text = " x ".join(map(str, dims))
    if n_bytes > MAX_IDX_BYTES:
        raise DataError(f"{path}: header dims {shape_text} promise {n_bytes:,} bytes; "
                        f"refusing more than {MAX_IDX_BYTES:,}")

    payload = np.empty(n_bytes, dtype=np.uint8)   # allocated once, at its final size
    buffer = memoryview(payload)                  # ... and filled in place, chunk by chunk
    filled = 0
    while filled < n_bytes:
        n = f.readinto(buffer[filled:filled + READ_CHUNK])
        if not n:
            raise DataError(f"{path}: truncated payload: header dims {shape_text} "
                            f"({dtype.name}) need {n_bytes:,} bytes after the header, "
                            f"only {filled:,} present")
        filled += n
    extra = 0
    while chunk := f.read(READ_CHUNK):             # also makes gzip check its CRC
        extra += len(chunk)
    if extra:
        raise DataError(f"{path}: {extra:,} trailing bytes after the {n_bytes:,}-byte payload "
                        f"declared by header dims {shape_text}")
    data = payload.view(dtype).reshape(dims)                   # (d1, ..., dn), no copy
    return data.astype(dtype.newbyteorder("="), copy=False)   # to native order; uint8: no copy


# ---------------------------------------------------------------------------------------
# 2. Datasets by name, and where to find them
# ---------------------------------------------------------------------------------------

# split -> (images file, labels file); MNIST and Fashion-MNIST use the same names.
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

# Mirrors and MD5s of the published .gz files.
#   MNIST: torchvision's `MNIST.mirrors` / `MNIST.resources` in
#     https://github.com/pytorch/vision/blob/main/torchvision/datasets/mnist.py
#     (the ossci S3 mirror first; Google's CVDF mirror is the one TensorFlow uses).
#   Fashion-MNIST: the "Get the Data" table of https://github.com/zalandoresearch/fashion-mnist
#     (Zalando's S3 bucket; the same files are in that repository under data/fashion/).
DATASETS = {
    "mnist": {
        "title": "MNIST",
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"],
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        # bytes of each published file: a download stops there, whatever the server sends
        "size": {"train-images-idx3-ubyte.gz": 9912422, "train-labels-idx1-ubyte.gz": 28881,
                 "t10k-images-idx3-ubyte.gz": 1648877, "t10k-labels-idx1-ubyte.gz": 4542},
        "system_dirs": [],
    },
    "fashion-mnist": {
        "title": "Fashion-MNIST",
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
                    "master/data/fashion/"],
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "size": {"train-images-idx3-ubyte.gz": 26421880, "train-labels-idx1-ubyte.gz": 29515,
                 "t10k-images-idx3-ubyte.gz": 4422102, "t10k-labels-idx1-ubyte.gz": 5148},
        # Debian's package dataset-fashion-mnist (recompressed: its MD5s differ, so local
        # files are never checksummed -- only downloads are).
        "system_dirs": ["/usr/share/datasets/fashion-mnist"],
    },
}
ENV_VAR = "SCRATCHVAE_DATA_DIR"
MAX_DOWNLOAD = 64 << 20         # bytes read from a URL whose size nobody states (the largest file: 26 MB)
DOWNLOAD_TIMEOUT = 30.0          # seconds without data before a mirror is given up
TEST_ONLY_HINT = "--train-split 'test[:9000]' --test-split 'test[9000:]'"


def _info(name):
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir(name):
    """$XDG_CACHE_HOME/scratchvae/<name>, or ~/.cache/scratchvae/<name> (where downloads go)."""
    root = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(root) if os.path.isabs(root) else Path.home() / ".cache"
    return root / "scratchvae" / name


def _file_in(directory, base):
    """The file holding ``base`` in ``directory``: uncompressed if present, else .gz, else None."""
    for candidate in (directory / base, directory / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _splits_in(directory):
    """Names of the splits whose image and label files are both in ``directory``."""
    return [s for s, bases in FILES.items() if all(_file_in(directory, b) for b in bases)]


def _dataset_dir(directory, name):
    """``directory/<name>`` if that is a folder (one per dataset), else ``directory``."""
    return directory / name if (directory / name).is_dir() else directory


def _named_for_other(directory, name):
    """True for e.g. .../mnist when asked for fashion-mnist: same file names, wrong images."""
    return directory.name in DATASETS and directory.name != name


def _check_explicit_dir(directory, name, splits):
    """An explicitly given directory must hold ``splits``; otherwise say what it does hold."""
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist or is not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise DataError(f"data directory {directory}: permission denied: this user may not list "
                        f"or read it")
    if _named_for_other(directory, name):
        raise DataError(f"data directory {directory} is named after the dataset "
                        f"{directory.name!r}, but {name!r} was asked for; point --data-dir "
                        f"at the {name} files or pass --dataset {directory.name}")
    present = _splits_in(directory)
    missing = [s for s in splits if s not in present]
    if not missing:
        return directory
    names = ", ".join(f"{b}[.gz]" for s in missing for b in FILES[s] if not _file_in(directory, b))
    found = [b for s in missing for b in FILES[s] if _file_in(directory, b)]
    holds = (f"it holds only the {' and '.join(map(repr, present))} split" if present else
             f"it has {', '.join(found)} but not the rest of the split" if found else
             f"it holds none of the {_info(name)['title']} files (contents: "
             f"{', '.join(sorted(p.name for p in directory.iterdir())[:8]) or 'empty'})")
    hint = (f"; to train and evaluate on parts of the test split, use {TEST_ONLY_HINT}"
            if present == ["test"] else "")
    raise DataError(f"split {missing[0]!r} of {name} is not in {directory} (needs {names}): "
                    f"{holds}{hint}")


def find_dataset(name, data_dir=None, download=True, progress=True, *,
                 splits=("train", "test"), mirrors=None, timeout=DOWNLOAD_TIMEOUT):
    """Return the directory holding dataset ``name`` (its files for ``splits``).

    Looked up in this order:
      1. ``data_dir`` (the --data-dir flag), or its subdirectory ``<name>`` -- authoritative:
         if it lacks a split, that is an error that lists what it does hold;
      2. $SCRATCHVAE_DATA_DIR (or its subdirectory ``<name>``);
      3. the user cache, $XDG_CACHE_HOME/scratchvae/<name> (default ~/.cache/...);
      4. system directories (Fashion-MNIST: Debian's /usr/share/datasets/fashion-mnist);
      5. otherwise the missing files are downloaded into the cache (unless ``download`` is
         False), each checked against its published MD5. ``mirrors`` overrides the URLs.
    Files may be .gz or uncompressed. Local files are not checksummed.
    """
    info = _info(name)
    for s in splits:
        if s not in FILES:
            raise DataError(f"unknown split {s!r}: choose one of {', '.join(FILES)}")
    if data_dir is not None:
        return _check_explicit_dir(_dataset_dir(Path(data_dir).expanduser(), name), name, splits)

    env = os.environ.get(ENV_VAR)
    places = [(f"${ENV_VAR}", _dataset_dir(Path(env).expanduser(), name))] if env else []
    places = [(w, d) for w, d in places if not _named_for_other(d, name)]
    places.append(("user cache", cache_dir(name)))
    places += [("system", Path(d)) for d in info["system_dirs"]]
    for where, directory in places:                 # (where, directory), also for the error
        if all(s in _splits_in(directory) for s in splits):
            return directory

    target = cache_dir(name)
    wanted = [f"{b}.gz" for s in splits for b in FILES[s] if not _file_in(target, b)]
    if not download:
        raise _not_found(name, wanted, places, ["downloading is turned off (--no-download)"])
    failures = []
    for filename in wanted:
        urls = [m if m.endswith("/") else m + "/" for m in (mirrors or info["mirrors"])]
        if not _download_from_mirrors([u + filename for u in urls], target / filename, info["md5"][filename],
                                      info["size"][filename], progress, timeout, failures):
            raise _not_found(name, wanted, places, failures)
    return target


def _not_found(name, missing, searched, failures):
    """The DataError for 'no copy here and none could be downloaded', with what to do."""
    if not os.environ.get(ENV_VAR):
        searched = [(f"${ENV_VAR}", "(not set)")] + searched
    lines = [f"{_info(name)['title']} not found: missing {', '.join(missing)}.",
             "Looked in:"]
    lines += [f"  {where:<20} {directory}" for where, directory in searched]
    lines += ["Could not download them:"] + [f"  {f}" for f in failures]
    lines += ["To provide them, put the files (.gz or uncompressed) in a directory and pass",
              "  --data-dir DIR  (data_dir=DIR in Python), or set SCRATCHVAE_DATA_DIR=DIR,",
              f"  or copy them into the cache {cache_dir(name)}",
              f"(published at {_info(name)['mirrors'][0]})."]
    return DataError("\n".join(lines))


def _download_from_mirrors(urls, target, md5, size, progress, timeout, failures):
    """Try each URL until one gives a file with the right MD5; record why the others failed."""
    for url in urls:
        try:
            download(url, target, md5, size=size, progress=progress, timeout=timeout)
            return True
        except (OSError, http.client.HTTPException, DataError) as e:   # URLError is an OSError
            failures.append(f"{url}: {e}")
    return False


def download(url, target, md5, progress=True, timeout=DOWNLOAD_TIMEOUT, size=None):
    """Download ``url`` to ``target`` atomically: all of it with the right MD5, or nothing.

    The bytes go to a temporary file next to ``target``; only when the length matches
    Content-Length and the MD5 matches the published one is it renamed (os.replace) to
    ``target``. ``size``, the published file's length, bounds what is read: a server that
    announces another length is refused before any byte is read, and one that sends more
    is cut off at size + 1 bytes (without ``size``: at Content-Length, or MAX_DOWNLOAD bytes).
    On any failure -- HTTP error, dropped connection, short read, too long, checksum
    mismatch, Ctrl-C -- the temporary file is removed and the exception propagates.
    Progress: an in-place percentage on a terminal; otherwise one line before and one after.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        os.fchmod(fd, file_mode())                 # mkstemp makes it 0600; cached data follows the umask
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and not (length.strip().isdigit() and length.strip().isascii()):
                raise DataError(f"the server sent an invalid Content-Length {length[:40]!r}")
            total = int(length) if length is not None else None
            if size is not None and total is not None and total != size:
                raise DataError(f"the server announces {total:,} bytes, the published file "
                                f"has {size:,}")
            limit = size if size is not None else total if total is not None else MAX_DOWNLOAD
            bound = ("of the published file" if size is not None else "it announced" if total is not None
                     else "scratchvae reads from a URL that states no length")
            total = limit if total is None and size is not None else total
            digest, received = hashlib.md5(), 0
            in_place = progress and sys.stderr.isatty()
            if progress and not in_place:
                shown = f" ({total:,} bytes)" if total else ""
                print(f"downloading {url}{shown} ...", file=sys.stderr, flush=True)
            while chunk := response.read(min(1 << 16, limit + 1 - received)):
                if received + len(chunk) > limit:          # more than the file can be: stop now
                    raise DataError(f"the server sent more than the {limit:,} bytes {bound}")
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if in_place:
                    done = f"{100 * received // total:3d}%" if total else f"{received >> 20} MiB"
                    print(f"\rdownloading {url}: {done}", end="", file=sys.stderr, flush=True)
            if in_place:
                print(file=sys.stderr)
            elif progress:
                print(f"downloaded {url}: {received:,} bytes", file=sys.stderr, flush=True)
        if total is not None and received != total:
            raise DataError(f"connection closed after {received:,} of {total:,} bytes")
        if digest.hexdigest() != md5:
            raise DataError(f"MD5 mismatch: got {digest.hexdigest()}, published {md5}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):                 # failed or interrupted: keep nothing
            os.remove(tmp)
    return target


# ---------------------------------------------------------------------------------------
# 3. Splits by name: "train", "test", "train[:5000]", "test[9000:]", "test[-1000:]"
# ---------------------------------------------------------------------------------------

_SPLIT_RE = re.compile(r"(?P<name>\w+)(?:\[(?P<start>[+-]?\d+)?:(?P<stop>[+-]?\d+)?\])?")


def parse_split(spec):
    """Split spec -> (split name, slice), e.g. "test[9000:]" -> ("test", slice(9000, None)).

    The part in brackets is a Python slice of the named split (start and stop, no step);
    without brackets the whole split: "train" -> ("train", slice(None)).
    """
    match = _SPLIT_RE.fullmatch(str(spec).strip())
    if not match:
        raise DataError(f"bad split {spec!r}: expected a split name optionally followed by "
                        f"a slice, like 'train', 'train[:5000]' or 'test[9000:]'")
    if match["name"] not in FILES:
        raise DataError(f"unknown split {match['name']!r} in {spec!r}: choose one of "
                        f"{', '.join(FILES)}, optionally sliced like 'test[:9000]'")
    start, stop = (None if g is None else int(g) for g in (match["start"], match["stop"]))
    if start is not None and stop is not None and (start < 0) == (stop < 0) and start >= stop:
        raise DataError(f"empty split {spec!r}: the slice [{start}:{stop}] selects no images")
    return match["name"], slice(start, stop)


@dataclass(eq=False)     # arrays have no single truth value: compare fields yourself
class Split:
    """One split of a dataset, held as uint8 (convert batches with ``iterate_batches``).

    Shapes:  images (N, 784) uint8, C-contiguous, pixel values 0..255
             labels (N,) uint8, class indices 0..9
    """
    images: np.ndarray
    labels: np.ndarray
    name: str            # dataset name, e.g. "mnist"
    split: str           # the split spec it was loaded with, e.g. "test[:9000]"
    start: int = 0       # where images[0] is in the named split: 9000 for "test[9000:]"

    def __len__(self):
        return len(self.images)

    def first(self, n):
        """The first n images (all of them if there are fewer) as a Split whose spec says so:
        Split "train" -> "train[0:10000]", "test[9000:]" -> "test[9000:9500]". A run trained on
        it records that spec, so that resuming it loads the very same images."""
        if n >= len(self):
            return self
        spec = f"{parse_split(self.split)[0]}[{self.start}:{self.start + n}]"
        return Split(self.images[:n], self.labels[:n], self.name, spec, self.start)


def load(name, split="train", data_dir=None, download=True, *, mirrors=None, progress=True):
    """Load ``split`` (e.g. "train", "test[9000:]") of dataset ``name`` as a ``Split``.

    Finds the files with ``find_dataset`` (same lookup order and arguments), reads them
    with ``read_idx`` and checks that they hold 28 x 28 uint8 images with one label
    0..9 each before slicing.
    """
    base, selection = parse_split(split)
    directory = find_dataset(name, data_dir, download, progress, splits=(base,),
                             mirrors=mirrors)
    images_path, labels_path = (_file_in(directory, b) for b in FILES[base])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected uint8 images of shape (N, 28, 28), "
                        f"header says {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path}: expected {len(images):,} uint8 labels to match "
                        f"{images_path.name}, header says {labels.dtype} {labels.shape}")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: labels must be 0..9, found {labels.max()}")

    n = len(images)
    start, stop, _ = selection.indices(n)
    if stop <= start:
        raise DataError(f"{split!r} selects no images: split {base!r} of {name} has {n:,}")
    images = images.reshape(n, 28 * 28)                  # (N, 784), a view: no copy
    if stop - start < n:                                  # copy the part, free the rest
        images, labels = images[start:stop].copy(), labels[start:stop].copy()
    return Split(images=images, labels=labels, name=name, split=split, start=start)


# ---------------------------------------------------------------------------------------
# 4. Batches: uint8 -> float32 in [0, 1], as they are drawn
# ---------------------------------------------------------------------------------------

BINARIZE = ("none", "dynamic", "threshold")
RENAMED_BINARIZE = {"static": "'static' is now called 'threshold' (a fixed cut at 0.5, pixel >= 128); "
                              "the literature's statically binarised MNIST (Larochelle & Murray 2011) is "
                              "one fixed random Bernoulli draw per pixel, which scratchvae does not make"}


def iterate_batches(images_u8, batch_size, rng, binarize="none", shuffle=True,
                    drop_last=False, out=None, labels=None):
    """Yield one epoch of float32 batches x (B, D) from uint8 images (N, D).

    binarize:
      "none"     x = pixels / 255, grey levels in [0, 1] (as in the PyTorch VAE example).
      "dynamic"  x_bin ~ Bernoulli(pixels / 255), drawn as ``rng.random(...) < pixels/255``
                 afresh for every batch, so every epoch sees a new binarisation
                 (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders").
      "threshold" x_bin = [pixels / 255 > 0.5], i.e. pixel >= 128: deterministic, the same
                 every epoch, as if the data set had been thresholded once. This is not the
                 "statically binarised MNIST" of the literature (Larochelle & Murray 2011: one
                 fixed random draw x_bin ~ Bernoulli(pixels / 255) per pixel), and its numbers
                 are not comparable with that data set's.
    Binary targets make the decoder's Bernoulli likelihood an exact model of the data.

    rng:       numpy.random.Generator for the shuffle and the dynamic draws (may be None
               when neither is used). Same seed -> same batches.
    out:       optional float32 buffer (min(batch_size, N), D) reused for every batch, so
               training allocates nothing per step. The yielded array is then a view of ``out`` and
               is OVERWRITTEN by the next batch: copy it if you need to keep it.
    drop_last: skip the final batch when it has fewer than batch_size images.
    labels:    optional (N,) integer labels: then each item is the pair (x, y), y (B,) the
               labels of the batch's images (the conditional VAE). The random draws are the
               same with or without labels.

    Shapes:  images_u8 (N, D) uint8 -> yields x (B, D) float32, B = batch_size
             (the last batch may be smaller); with labels, (x, y (B,))
    """
    if not (isinstance(images_u8, np.ndarray) and images_u8.dtype == np.uint8
            and images_u8.ndim == 2):
        got = getattr(images_u8, "dtype", type(images_u8).__name__)
        raise TypeError(f"images_u8 must be a uint8 array (N, D), got {got} "
                        f"{getattr(images_u8, 'shape', '')}")
    if not _is_count(batch_size):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r:.60}")
    if binarize in RENAMED_BINARIZE:
        raise ValueError(f"binarize: {RENAMED_BINARIZE[binarize]}")
    if binarize not in BINARIZE:
        raise ValueError(f"binarize must be one of {BINARIZE}, got {binarize!r}")
    if (shuffle or binarize == "dynamic") and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    batch_size, D = int(batch_size), images_u8.shape[1]
    rows = min(batch_size, len(images_u8))                        # no batch is larger than the data
    if out is not None and (out.dtype != np.float32 or out.shape != (rows, D)
                            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous float32 array of shape "
                         f"{(rows, D)}, got {out.dtype} {out.shape}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images_u8),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {len(images_u8)} integers, one per image, got "
                             f"{labels.dtype} {labels.shape}")
    return _batches(images_u8, batch_size, rng, binarize, shuffle, drop_last, out, labels)


def _batches(images_u8, batch_size, rng, binarize, shuffle, drop_last, out, labels=None):
    """The generator behind iterate_batches (split off so bad arguments fail at the call)."""
    N, D = images_u8.shape
    order = rng.permutation(N) if shuffle else np.arange(N)
    rows = min(batch_size, N)
    pixels_buf = np.empty((rows, D), dtype=np.uint8)              # gathered rows, reused
    uniform_buf = np.empty((rows, D), dtype=np.float32) if binarize == "dynamic" else None
    for start in range(0, N, batch_size):
        index = order[start:start + batch_size]
        B = len(index)
        if B < batch_size and drop_last:
            return
        pixels = np.take(images_u8, index, axis=0, out=pixels_buf[:B])    # (B, D) uint8
        x = out[:B] if out is not None else np.empty((B, D), dtype=np.float32)
        if binarize == "threshold":
            np.greater(pixels, 127, out=x)                    # x = [pixels / 255 > 0.5]
        else:
            np.divide(pixels, np.float32(255), out=x)         # x = pixels / 255
            if binarize == "dynamic":
                u = rng.random(dtype=np.float32, out=uniform_buf[:B])   # u ~ Uniform[0, 1)
                np.less(u, x, out=x)                          # x_bin = [u < x] ~ Bernoulli(x)
        yield x if labels is None else (x, labels[index])


# ---------------------------------------------------------------------------------------
# 5. Command-line flags
# ---------------------------------------------------------------------------------------

def _split_arg(spec):
    """argparse type for split specs: validate now, keep the string (``load`` parses it)."""
    try:
        parse_split(spec)
    except DataError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return spec


def _binarize_arg(value):
    """argparse type for --binarize: one of BINARIZE; a renamed choice says what it became."""
    if value in RENAMED_BINARIZE:
        raise argparse.ArgumentTypeError(RENAMED_BINARIZE[value])
    if value not in BINARIZE:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(BINARIZE)})")
    return value


def add_data_arguments(parser, train_split=True, test_split=True):
    """Add the data flags to an argparse parser; ``--no-download`` sets ``args.download=False``."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=list(DATASETS), default="mnist",
                       help="which dataset (default: mnist)")
    group.add_argument("--data-dir", type=Path, default=None,
                       help=f"directory holding the IDX files (.gz or not), or a directory with "
                            f"a subdirectory per dataset; default: ${ENV_VAR}, then the user "
                            f"cache, then download")
    if train_split:
        group.add_argument("--train-split", type=_split_arg, default="train",
                           help="split to train on, e.g. train, 'train[:5000]', 'test[:9000]'")
    if test_split:
        group.add_argument("--test-split", type=_split_arg, default="test",
                           help="the test split (evaluated on; explore shows its images), e.g. test, 'test[9000:]'")
    group.add_argument("--binarize", type=_binarize_arg, default="none", metavar="{" + ",".join(BINARIZE) + "}",
                       help="targets: grey levels (none), a fresh Bernoulli draw per epoch "
                            "(dynamic), or a fixed cut at 0.5, pixel >= 128 (threshold)")
    group.add_argument("--no-download", dest="download", action="store_false",
                       help="never download; fail with a message if the files are not found")
    return parser
