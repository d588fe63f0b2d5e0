"""Tests for scratchvae/data.py.

Every test runs with HOME, the cache and $SCRATCHVAE_DATA_DIR pointed into tmp_path, and
every mirror pointed at a closed port on 127.0.0.1, so nothing here can read the real home
directory or reach the network. Download tests start their own HTTP server on 127.0.0.1.
"""
import argparse
import functools
import gzip
import hashlib
import http.server
import socket
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scratchvae.machinery.data as data
from scratchvae.machinery.data import DataError
from helpers import fake_images, idx_bytes, write_dataset, write_file


# --------------------------------------------------------------------------------------
# Helpers: write small IDX files ourselves
# --------------------------------------------------------------------------------------


def closed_port_url():
    """http://127.0.0.1:<port>/ where nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real home, cache, env dir, system dir, proxy or mirror is ever used,
    and any connection to an address other than 127.0.0.1 fails the test."""
    real_connect = socket.socket.connect

    def connect_to_localhost_only(sock, address):
        assert address[0] == "127.0.0.1", f"a test tried to connect to {address}"
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect_to_localhost_only)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("XDG_CACHE_HOME", data.ENV_VAR, "http_proxy", "HTTP_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for info in data.DATASETS.values():
        monkeypatch.setitem(info, "mirrors", [closed_port_url()])
        monkeypatch.setitem(info, "system_dirs", [str(tmp_path / "no-system-dir")])


def listing(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --------------------------------------------------------------------------------------
# 1. read_idx
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
@pytest.mark.parametrize("type_code, values", [
    (0x08, np.arange(2 * 3 * 4).reshape(2, 3, 4)),
    (0x09, np.array([-128, -1, 0, 127])),
    (0x0B, np.array([[-300, 2], [3, 30000]])),
    (0x0C, np.array([-(2 ** 31), 7, 2 ** 31 - 1])),
    (0x0D, np.array([0.5, -1.25])),
    (0x0E, np.array([[np.pi]])),
])
def test_read_idx_round_trip(tmp_path, name, type_code, values):
    path = write_file(tmp_path / name, idx_bytes(values, type_code))
    got = data.read_idx(path)
    assert got.shape == values.shape
    assert got.dtype == data.IDX_TYPES[type_code].newbyteorder("=")
    np.testing.assert_array_equal(got, values.astype(got.dtype))


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_read_idx_peak_memory_stays_near_the_result_size(tmp_path, name):
    images = np.zeros((10000, 28, 28), np.uint8)          # 7.8 MB, compresses to almost nothing
    images[:, 14, 14] = np.arange(10000) % 256
    path = write_file(tmp_path / name, idx_bytes(images))
    tracemalloc.start()
    try:
        got = data.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, images)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    # The result plus a few small chunks; reading the whole payload as bytes first
    # and then converting would need about twice the result.
    assert peak < 1.15 * images.nbytes, f"peak {peak:,} B for a {images.nbytes:,} B result"


def _gz_truncated(payload):
    blob = gzip.compress(payload)
    return blob[: len(blob) // 2]


def _gz_bad_crc(payload):
    blob = bytearray(gzip.compress(payload))
    blob[-8] ^= 0xFF                     # the CRC32 in the gzip trailer
    return bytes(blob)


GOOD = idx_bytes(np.zeros((3, 28, 28), np.uint8))
HUGE_DIMS = bytes([0, 0, 8, 3]) + np.array([2 ** 31, 28, 28], ">u4").tobytes()

# (file name, exact bytes on disk, a phrase the error must contain)
CORRUPTIONS = {
    "empty raw file": ("x-idx3-ubyte", b"", "empty"),
    "empty .gz file": ("x-idx3-ubyte.gz", b"", "empty"),
    "wrong magic": ("x-idx3-ubyte", b"\x12\x34" + GOOD[2:], "wrong magic number 0x1234"),
    "gzip data, raw name": ("x-idx3-ubyte", gzip.compress(GOOD), "gzip-compressed"),
    "not gzip, .gz name": ("x-idx3-ubyte.gz", GOOD, "not gzip-compressed"),
    "unknown type code": ("x-idx3-ubyte", GOOD[:2] + b"\x07" + GOOD[3:], "type code 0x07"),
    "zero dimensions": ("x-idx3-ubyte", b"\x00\x00\x08\x00", "0 dimensions"),
    "truncated magic": ("x-idx3-ubyte", b"\x00\x00", "truncated header"),
    "truncated dims": ("x-idx3-ubyte", GOOD[:10], "truncated header"),
    "truncated payload": ("x-idx3-ubyte", GOOD[:-1], "truncated payload"),
    "truncated payload .gz": ("x-idx3-ubyte.gz", gzip.compress(GOOD[:-100]), "truncated payload"),
    "header dims too large": ("x-idx3-ubyte", GOOD[:7] + b"\x04" + GOOD[8:], "truncated payload"),
    "header dims too small": ("x-idx3-ubyte", GOOD[:7] + b"\x02" + GOOD[8:], "trailing bytes"),
    "trailing bytes": ("x-idx3-ubyte", GOOD + b"\x00", "1 trailing bytes"),
    "trailing bytes .gz": ("x-idx3-ubyte.gz", gzip.compress(GOOD + b"abc"), "3 trailing bytes"),
    "cut gzip stream": ("x-idx3-ubyte.gz", _gz_truncated(GOOD), "truncated or corrupt gzip"),
    "bad gzip CRC": ("x-idx3-ubyte.gz", _gz_bad_crc(GOOD), "corrupt gzip"),
    "absurd dims": ("x-idx3-ubyte", HUGE_DIMS, "refusing"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_read_idx_corruption_raises_clear_error(tmp_path, case):
    name, blob, phrase = CORRUPTIONS[case]
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(DataError) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)
    assert phrase in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.read_idx(tmp_path / "nope-idx3-ubyte")


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# Valid IDX files that are not a valid MNIST split: load() must say which file and why.
def _wrong_shape(d):
    write_file(d / "t10k-images-idx3-ubyte.gz", idx_bytes(np.zeros((3, 28, 27), np.uint8)))


def _wrong_type(d):
    write_file(d / "t10k-images-idx3-ubyte.gz", idx_bytes(np.zeros((3, 28, 28)), 0x0C))


def _label_count(d):
    write_file(d / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(2, np.uint8)))


def _label_range(d):
    write_file(d / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([0, 5, 12], np.uint8)))


@pytest.mark.parametrize("corrupt, file, phrase", [
    (_wrong_shape, "t10k-images-idx3-ubyte.gz", "(N, 28, 28)"),
    (_wrong_type, "t10k-images-idx3-ubyte.gz", "int32"),
    (_label_count, "t10k-labels-idx1-ubyte.gz", "expected 3 uint8 labels"),
    (_label_range, "t10k-labels-idx1-ubyte.gz", "labels must be 0..9, found 12"),
])
def test_load_rejects_files_that_are_not_mnist(tmp_path, corrupt, file, phrase):
    write_dataset(tmp_path / "d", n_test=3)
    corrupt(tmp_path / "d")
    with pytest.raises(DataError) as err:
        data.load("mnist", "test", data_dir=tmp_path / "d")
    assert str(tmp_path / "d" / file) in str(err.value) and phrase in str(err.value)


# --------------------------------------------------------------------------------------
# 2. Finding the dataset
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_load_from_explicit_dir_gz_or_raw(tmp_path, gz):
    written = write_dataset(tmp_path / "d", n_train=12, n_test=5, gz=gz)
    for split in ("train", "test"):
        s = data.load("mnist", split, data_dir=tmp_path / "d")
        images, labels = written[split]
        assert s.images.dtype == np.uint8 and s.images.shape == (len(images), 784)
        assert s.images.flags.c_contiguous
        np.testing.assert_array_equal(s.images, images)
        np.testing.assert_array_equal(s.labels, labels)
        assert (s.name, s.split, len(s)) == ("mnist", split, len(images))


def test_lookup_order_explicit_then_env_then_cache_then_system(tmp_path, monkeypatch):
    # Each place holds a test split of a different size, so len() tells which was used.
    write_dataset(tmp_path / "explicit", n_test=1)
    write_dataset(tmp_path / "env" / "fashion-mnist", n_test=2)
    write_dataset(tmp_path / "home" / ".cache" / "scratchvae" / "fashion-mnist", n_test=3)
    write_dataset(tmp_path / "system", n_test=4)
    monkeypatch.setitem(data.DATASETS["fashion-mnist"], "system_dirs", [str(tmp_path / "system")])
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))

    def n(**kw):
        return len(data.load("fashion-mnist", "test", download=False, **kw))

    assert n(data_dir=tmp_path / "explicit") == 1
    assert n() == 2
    monkeypatch.delenv(data.ENV_VAR)
    assert n() == 3
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))      # moves the cache
    assert n() == 4
    write_dataset(tmp_path / "xdg" / "scratchvae" / "fashion-mnist", n_test=5)
    assert n() == 5


def test_env_dir_without_the_split_falls_through_to_cache(tmp_path, monkeypatch):
    write_dataset(tmp_path / "env" / "mnist", n_test=2)
    write_dataset(data.cache_dir("mnist"), n_train=7)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert len(data.load("mnist", "test", download=False)) == 2
    assert len(data.load("mnist", "train", download=False)) == 7


def test_env_dir_named_after_other_dataset_is_skipped(tmp_path, monkeypatch):
    write_dataset(tmp_path / "mnist", n_test=2)                 # MNIST files ...
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "mnist"))   # ... must not pass for Fashion
    with pytest.raises(DataError, match="Fashion-MNIST not found"):
        data.load("fashion-mnist", "test", download=False)


def test_explicit_dir_may_be_a_root_with_one_subdir_per_dataset(tmp_path):
    write_dataset(tmp_path / "root" / "mnist", n_test=2)
    write_dataset(tmp_path / "root" / "fashion-mnist", n_test=3)
    assert len(data.load("mnist", "test", data_dir=tmp_path / "root")) == 2
    assert len(data.load("fashion-mnist", "test", data_dir=tmp_path / "root")) == 3


def test_explicit_dir_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist") as err:
        data.load("mnist", "test", data_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_explicit_dir_named_after_other_dataset(tmp_path):
    write_dataset(tmp_path / "mnist", n_test=2)
    with pytest.raises(DataError, match="named after the dataset 'mnist'"):
        data.load("fashion-mnist", "test", data_dir=tmp_path / "mnist")


def test_explicit_test_only_dir_explains_and_suggests_test_slices(tmp_path):
    write_dataset(tmp_path / "d", n_test=20)
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", data_dir=tmp_path / "d")
    message = str(err.value)
    assert str(tmp_path / "d") in message and "train-images-idx3-ubyte" in message
    assert "only the 'test' split" in message
    assert "--train-split 'test[:9000]' --test-split 'test[9000:]'" in message
    assert len(data.load("mnist", "test[:15]", data_dir=tmp_path / "d")) == 15
    assert len(data.load("mnist", "test[15:]", data_dir=tmp_path / "d")) == 5


def test_explicit_dir_with_half_a_split_lists_its_contents(tmp_path):
    (tmp_path / "d").mkdir()
    write_file(tmp_path / "d" / "t10k-images-idx3-ubyte.gz", idx_bytes(fake_images(2)))
    with pytest.raises(DataError, match=r"needs t10k-labels-idx1-ubyte\[.gz\]\): it has "
                                        r"t10k-images-idx3-ubyte but not the rest") as err:
        data.load("mnist", "test", data_dir=tmp_path / "d")
    assert "none of the MNIST files" not in str(err.value)


def test_download_false_gives_clear_error_without_network(tmp_path):
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", download=False)
    message = str(err.value)
    for phrase in ("MNIST not found", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                   "downloading is turned off", "--data-dir DIR", "SCRATCHVAE_DATA_DIR",
                   str(tmp_path / "home" / ".cache" / "scratchvae" / "mnist")):
        assert phrase in message
    assert listing(data.cache_dir("mnist")) == []


def test_unknown_dataset_and_split_names():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        data.load("cifar", "train")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        data.find_dataset("mnist", splits=("valid",))


# --------------------------------------------------------------------------------------
# 3. Downloading, against our own server on 127.0.0.1
# --------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.die_midway:     # promise everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving ``server.files`` {path: bytes}; ``server.url``."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.die_midway, httpd.requests = {}, set(), []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def published(tmp_path, monkeypatch):
    """Small MNIST-like test split as .gz bytes; DATASETS["mnist"] md5s set to theirs."""
    source = tmp_path / "published"
    written = write_dataset(source, n_test=30)
    blobs = {p.name: p.read_bytes() for p in source.iterdir()}
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in blobs.items()}
    monkeypatch.setitem(data.DATASETS["mnist"], "md5", md5)
    monkeypatch.setitem(data.DATASETS["mnist"], "size", {name: len(blob) for name, blob in blobs.items()})
    return blobs, written["test"]


def test_download_success_into_cache(server, published, capsys):
    blobs, (images, labels) = published
    server.files = {f"/mirror/{name}": blob for name, blob in blobs.items()}
    s = data.load("mnist", "test[:20]", mirrors=[server.url + "/mirror"])
    np.testing.assert_array_equal(s.images, images[:20])
    np.testing.assert_array_equal(s.labels, labels[:20])
    assert listing(data.cache_dir("mnist")) == sorted(blobs)            # no *.part left
    err = capsys.readouterr().err                                       # progress on stderr,
    assert "downloading " + server.url in err and "\r" not in err       # plain lines off a terminal
    n_requests = len(server.requests)
    assert len(data.load("mnist", "test", mirrors=[server.url + "/mirror/"])) == 30
    assert len(server.requests) == n_requests                           # cached: no request


def test_download_falls_back_to_next_mirror(server, published):
    blobs, _ = published
    server.files = {f"/good/{name}": blob for name, blob in blobs.items()}
    data.find_dataset("mnist", splits=("test",), progress=False,
                      mirrors=[server.url + "/missing/", server.url + "/good/"])
    assert listing(data.cache_dir("mnist")) == sorted(blobs)
    assert server.requests[:2] == ["/missing/t10k-images-idx3-ubyte.gz",
                                   "/good/t10k-images-idx3-ubyte.gz"]


def test_download_checksum_mismatch_keeps_nothing(server, published):
    blobs, _ = published
    server.files = {f"/m/{name}": blob for name, blob in blobs.items()}
    blob = bytearray(blobs["t10k-images-idx3-ubyte.gz"])
    blob[-20] ^= 0xFF                                            # the published length, other bytes
    server.files["/m/t10k-images-idx3-ubyte.gz"] = bytes(blob)
    with pytest.raises(DataError) as err:
        data.load("mnist", "test", mirrors=[server.url + "/m/"], progress=False)
    assert "MD5 mismatch" in str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)
    assert listing(data.cache_dir("mnist")) == []


def test_download_server_dies_midway_keeps_nothing(server, published):
    blobs, _ = published
    server.files = {f"/m/{name}": blob for name, blob in blobs.items()}
    server.die_midway = {"/m/t10k-images-idx3-ubyte.gz"}
    with pytest.raises(DataError) as err:
        data.load("mnist", "test", mirrors=[server.url + "/m/"], progress=False)
    assert f"connection closed after {len(blobs['t10k-images-idx3-ubyte.gz']) // 2:,}" \
        in str(err.value)
    assert listing(data.cache_dir("mnist")) == []


def test_download_interrupted_by_ctrl_c_keeps_nothing(tmp_path, monkeypatch):
    class Response:                    # urlopen stand-in: one chunk, then Ctrl-C
        headers = {"Content-Length": "100"}
        chunks = [b"x" * 50]

        def read(self, n):
            if self.chunks:
                return self.chunks.pop()
            raise KeyboardInterrupt

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: Response())
    with pytest.raises(KeyboardInterrupt):
        data.download("http://127.0.0.1:1/f.gz", tmp_path / "d" / "f.gz", "0" * 32, progress=False)
    assert listing(tmp_path / "d") == []


def test_offline_error_lists_missing_files_places_and_remedies(tmp_path):
    with pytest.raises(DataError) as err:
        data.load("fashion-mnist", "train", progress=False)       # mirrors: a closed port
    message = str(err.value)
    for phrase in ("Fashion-MNIST not found", "train-images-idx3-ubyte.gz",
                   "train-labels-idx1-ubyte.gz", "Looked in:", "Could not download",
                   "127.0.0.1", "--data-dir DIR", "SCRATCHVAE_DATA_DIR",
                   str(tmp_path / "no-system-dir"), str(data.cache_dir("fashion-mnist"))):
        assert phrase in message
    assert listing(data.cache_dir("fashion-mnist")) == []


# --------------------------------------------------------------------------------------
# 4. Splits by name
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("train", ("train", slice(None))),
    ("test", ("test", slice(None))),
    ("train[:5000]", ("train", slice(None, 5000))),
    ("test[:9000]", ("test", slice(None, 9000))),
    ("test[9000:]", ("test", slice(9000, None))),
    ("test[-1000:]", ("test", slice(-1000, None))),
    ("train[10:20]", ("train", slice(10, 20))),
    (" test[:] ", ("test", slice(None, None))),
])
def test_parse_split(spec, expected):
    assert data.parse_split(spec) == expected


@pytest.mark.parametrize("spec", ["", "valid", "train[", "train[5]", "train[1:2:3]",
                                  "train[a:]", "train[:5000]x", "[:10]", "train [:5]"])
def test_parse_split_rejects_bad_specs(spec):
    with pytest.raises(DataError, match="split"):
        data.parse_split(spec)


@pytest.fixture(scope="module")
def twelve_test_images(tmp_path_factory):
    directory = tmp_path_factory.mktemp("twelve")
    return directory, write_dataset(directory, n_test=12)["test"]


bound = st.none() | st.integers(-20, 20)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=bound, stop=bound, n=st.integers(1, 14))
def test_the_first_n_images_of_a_split_have_a_spec_that_loads_them(twelve_test_images, start, stop, n):
    """Split.first(n): what demo.py --quick trains on, and the spec its checkpoints record."""
    directory, (images, labels) = twelve_test_images
    spec = f"test[{'' if start is None else start}:{'' if stop is None else stop}]"
    if not range(12)[start:stop]:
        return                                     # an empty split: nothing to take the first of
    whole = data.load("mnist", spec, data_dir=directory)
    first = whole.first(n)
    np.testing.assert_array_equal(first.images, images[start:stop][:n])
    np.testing.assert_array_equal(first.labels, labels[start:stop][:n])
    again = data.load("mnist", first.split, data_dir=directory)      # the recorded spec, loaded
    np.testing.assert_array_equal(again.images, first.images)
    assert (first.split == spec) == (n >= len(whole))                  # narrowed only when it takes fewer


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=bound, stop=bound)
def test_split_slicing_follows_python_slices(twelve_test_images, start, stop):
    directory, (images, labels) = twelve_test_images
    spec = f"test[{'' if start is None else start}:{'' if stop is None else stop}]"
    if start is not None and stop is not None and (start < 0) == (stop < 0) and start >= stop:
        with pytest.raises(DataError, match=r"empty split .*selects no images"):
            data.parse_split(spec)                 # empty whatever the split's size: said at once
        return
    assert data.parse_split(spec) == ("test", slice(start, stop))
    expected = range(12)[start:stop]
    if len(expected) == 0:
        with pytest.raises(DataError, match=r"selects no images: split 'test' of mnist has 12"):
            data.load("mnist", spec, data_dir=directory)
        return
    s = data.load("mnist", spec, data_dir=directory)
    np.testing.assert_array_equal(s.images, images[start:stop])
    np.testing.assert_array_equal(s.labels, labels[start:stop])
    assert s.images.flags.c_contiguous and s.split == spec
    if len(s) < 12:
        assert s.images.base is None and s.labels.base is None    # does not pin the full split


def test_out_of_range_start_message(twelve_test_images):
    directory, _ = twelve_test_images
    with pytest.raises(DataError) as err:
        data.load("mnist", "test[20000:]", data_dir=directory)
    assert str(err.value) == "'test[20000:]' selects no images: split 'test' of mnist has 12"


# --------------------------------------------------------------------------------------
# 5. Batches
# --------------------------------------------------------------------------------------

def indices_of(batch):
    """Recover the image indices written by fake_images from a binarize='none' batch."""
    pixels = np.rint(batch * 255).astype(int)
    return pixels[:, 0] * 256 + pixels[:, 1]


@pytest.fixture
def images():
    return fake_images(103).reshape(103, 784)


@pytest.mark.parametrize("binarize", data.BINARIZE)
def test_batches_shapes_dtype_range(images, binarize):
    batches = list(data.iterate_batches(images, 10, np.random.default_rng(0), binarize))
    assert [len(x) for x in batches] == [10] * 10 + [3]
    for x in batches:
        assert x.dtype == np.float32 and x.shape[1] == 784
        assert x.min() >= 0 and x.max() <= 1
        if binarize != "none":
            assert set(np.unique(x)) <= {0.0, 1.0}
    dropped = list(data.iterate_batches(images, 10, np.random.default_rng(0), binarize,
                                        drop_last=True))
    assert [len(x) for x in dropped] == [10] * 10


def test_batches_grey_values_are_pixels_over_255(images):
    (x,) = data.iterate_batches(images, 103, None, shuffle=False)
    np.testing.assert_array_equal(x, images.astype(np.float32) / np.float32(255))
    edge = np.array([[0, 255]], np.uint8)
    (x,) = data.iterate_batches(edge, 1, None, shuffle=False)
    assert x.tolist() == [[0.0, 1.0]]


def test_every_image_exactly_once_per_epoch_in_shuffled_order(images):
    rng = np.random.default_rng(1)
    epoch1 = np.concatenate([indices_of(x) for x in data.iterate_batches(images, 16, rng)])
    epoch2 = np.concatenate([indices_of(x) for x in data.iterate_batches(images, 16, rng)])
    for order in (epoch1, epoch2):
        assert sorted(order) == list(range(103))
    assert list(epoch1) != list(range(103)) and list(epoch1) != list(epoch2)


def test_no_shuffle_keeps_order(images):
    order = np.concatenate([indices_of(x) for x in
                            data.iterate_batches(images, 16, None, shuffle=False)])
    assert list(order) == list(range(103))


@pytest.mark.parametrize("binarize", data.BINARIZE)
def test_same_seed_same_batches(images, binarize):
    def epoch(seed):
        return np.concatenate(list(data.iterate_batches(images, 16, np.random.default_rng(seed),
                                                        binarize)))
    np.testing.assert_array_equal(epoch(7), epoch(7))
    assert not np.array_equal(epoch(7), epoch(8))


def test_dynamic_binarisation_is_bernoulli_of_the_pixel_intensity():
    pixels = np.random.default_rng(2).integers(0, 256, (2000, 784), dtype=np.uint8)
    pixels[:, :4] = [0, 255, 64, 191]
    rng = np.random.default_rng(3)
    epochs = [np.concatenate(list(data.iterate_batches(pixels, 500, rng, "dynamic",
                                                        shuffle=False))) for _ in range(2)]
    for x in epochs:
        assert set(np.unique(x)) == {0.0, 1.0}
        assert (x[:, 0] == 0).all() and (x[:, 1] == 1).all()
        # mid-grey columns: P(x_bin = 1) = 64/255 = 0.251 and 191/255 = 0.749 (std 0.01)
        assert abs(x[:, 2].mean() - 64 / 255) < 0.04 and abs(x[:, 3].mean() - 191 / 255) < 0.04
        # E[x_bin] = pixel / 255; 1.6M draws: std of the mean < 4e-4
        assert abs(x.mean() - pixels.mean() / 255) < 3e-3
        bright, dark = pixels > 200, pixels < 50
        assert x[bright].mean() > 0.78 and x[dark].mean() < 0.2
    assert not np.array_equal(epochs[0], epochs[1])            # a fresh draw every epoch


def test_threshold_binarisation_cuts_at_half():
    pixels = np.array([[0, 127, 128, 255]], np.uint8)
    (x,) = data.iterate_batches(pixels, 1, None, "threshold", shuffle=False)
    assert x.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_the_old_name_static_says_what_it_was_and_what_it_is_not(capsys):
    """'static' was a 0.5 threshold, not the literature's fixed random draw: refused by name."""
    pixels = np.array([[0, 255]], np.uint8)
    with pytest.raises(ValueError, match="now called 'threshold'.*one fixed random Bernoulli draw"):
        data.iterate_batches(pixels, 1, None, "static", shuffle=False)
    parser = data.add_data_arguments(argparse.ArgumentParser(prog="p"))
    with pytest.raises(SystemExit) as exit:
        parser.parse_args(["--binarize", "static"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "now called 'threshold'" in err and "Traceback" not in err
    assert parser.parse_args(["--binarize", "threshold"]).binarize == "threshold"


def test_threshold_binarisation_is_the_same_every_epoch(images):
    rng = np.random.default_rng(4)
    first, second = (np.concatenate(list(data.iterate_batches(images, 16, rng, "threshold",
                                                               shuffle=False)))
                     for _ in range(2))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, images > 127)


@pytest.mark.parametrize("binarize", data.BINARIZE)
def test_out_buffer_is_reused_and_matches_fresh_arrays(images, binarize):
    out = np.empty((16, 784), np.float32)
    fresh = [x.copy() for x in data.iterate_batches(images, 16, np.random.default_rng(5),
                                                    binarize)]
    reused = []
    for x in data.iterate_batches(images, 16, np.random.default_rng(5), binarize, out=out):
        assert np.shares_memory(x, out)
        reused.append(x.copy())
    assert len(reused) == len(fresh)
    for a, b in zip(reused, fresh):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, error, phrase", [
    (dict(images_u8=np.zeros((4, 784), np.float32)), TypeError, "uint8"),
    (dict(images_u8=np.zeros(784, np.uint8)), TypeError, "uint8 array"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), ValueError, "batch_size"),
    (dict(binarize="maybe"), ValueError, "binarize"),
    (dict(rng=None), TypeError, "Generator"),
    (dict(rng=np.random.RandomState(0)), TypeError, "Generator"),
    (dict(out=np.empty((4, 784), np.float64)), ValueError, "float32"),
    (dict(out=np.empty((3, 784), np.float32)), ValueError, "shape"),
])
def test_iterate_batches_rejects_bad_arguments_at_the_call(kwargs, error, phrase):
    args = dict(images_u8=np.zeros((10, 784), np.uint8), batch_size=4,
                rng=np.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(error, match=phrase):
        data.iterate_batches(**args)                 # no next(): fails before iterating


# --------------------------------------------------------------------------------------
# 6. Command-line flags
# --------------------------------------------------------------------------------------

def test_data_arguments_defaults_and_flags(tmp_path):
    parser = data.add_data_arguments(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert (args.dataset, args.data_dir, args.train_split, args.test_split, args.binarize,
            args.download) == ("mnist", None, "train", "test", "none", True)
    args = parser.parse_args(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path),
                              "--train-split", "test[:9000]", "--test-split", "test[9000:]",
                              "--binarize", "dynamic", "--no-download"])
    assert (args.dataset, args.data_dir, args.train_split, args.test_split, args.binarize,
            args.download) == ("fashion-mnist", tmp_path, "test[:9000]", "test[9000:]",
                               "dynamic", False)


def test_data_arguments_reject_bad_split_with_its_message(capsys):
    parser = data.add_data_arguments(argparse.ArgumentParser())
    with pytest.raises(SystemExit):
        parser.parse_args(["--train-split", "valid[:10]"])
    assert "unknown split 'valid'" in capsys.readouterr().err


def test_data_arguments_optional_split_flags():
    parser = data.add_data_arguments(argparse.ArgumentParser(), train_split=False)
    args = parser.parse_args(["--test-split", "test[:5]"])
    assert not hasattr(args, "train_split") and args.test_split == "test[:5]"


# --------------------------------------------------------------------------------------
# 7. The real data in ../shared/data (skipped with a reason when absent)
# --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def load_shared(name, split, directory):
    """Load once per module run: the full Fashion-MNIST training set takes ~0.5 s."""
    return data.load(name, split, data_dir=directory, download=False)


@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(shared_fashion_dir, split, n):
    s = load_shared("fashion-mnist", split, shared_fashion_dir)
    assert s.images.shape == (n, 784) and s.images.dtype == np.uint8
    assert s.images.flags.c_contiguous and s.labels.shape == (n,)
    # Fashion-MNIST is balanced: n / 10 images of each of the classes 0..9.
    assert np.bincount(s.labels, minlength=10).tolist() == [n // 10] * 10
    assert 0 < s.images.mean() < 255 and s.images.max() == 255
    if split == "train":
        assert s.labels[:5].tolist() == [9, 0, 0, 3, 0]    # ankle boot, T-shirt, ...


def test_real_mnist_test_split_matches_a_plain_reader(shared_mnist_dir):
    s = load_shared("mnist", "test", shared_mnist_dir)
    assert s.images.shape == (10000, 784) and s.labels.shape == (10000,)
    assert s.labels[:5].tolist() == [7, 2, 1, 0, 4]
    with gzip.open(shared_mnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        plain = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10000, 784)
    np.testing.assert_array_equal(s.images, plain)
    assert sorted(set(s.labels.tolist())) == list(range(10))


def test_real_mnist_test_only_layout_with_slices(shared_mnist_dir):
    parser = data.add_data_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--data-dir", str(shared_mnist_dir), "--no-download",
                              "--train-split", "test[:9000]", "--test-split", "test[9000:]"])
    train = data.load(args.dataset, args.train_split, args.data_dir, args.download)
    test = data.load(args.dataset, args.test_split, args.data_dir, args.download)
    assert (len(train), len(test)) == (9000, 1000)
    full = load_shared("mnist", "test", shared_mnist_dir)
    np.testing.assert_array_equal(np.concatenate([train.images, test.images]), full.images)
    np.testing.assert_array_equal(np.concatenate([train.labels, test.labels]), full.labels)


def test_real_mnist_train_from_test_only_dir_is_a_clear_error(shared_mnist_dir):
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", data_dir=shared_mnist_dir, download=False)
    message = str(err.value)
    assert str(shared_mnist_dir) in message and "only the 'test' split" in message
    assert "--train-split 'test[:9000]' --test-split 'test[9000:]'" in message


def test_real_data_through_env_var_root(shared_mnist_dir, shared_fashion_dir, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(shared_mnist_dir.parent))
    assert len(data.load("mnist", "test[9000:]", download=False)) == 1000
    assert len(data.load("fashion-mnist", "test[-10:]", download=False)) == 10


# ------------------------------------------------------------------ hostile servers, unreadable files
class _Body:
    """urlopen stand-in: ``headers`` as given, then ``body`` (repeated forever if endless);
    counts the bytes handed out, to show a download stops reading where it should."""

    def __init__(self, headers, body, endless=False):
        self.headers, self.body, self.endless, self.given = headers, body, endless, 0

    def read(self, n):
        if self.endless:
            chunk = (self.body * (n // max(1, len(self.body)) + 1))[:n]
        else:
            chunk, self.body = self.body[:n], self.body[n:]
        self.given += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


PUBLISHED = bytes(range(256)) * 40                          # a 10,240-byte "published file"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.integers(-len(PUBLISHED), 10**6), endless=st.booleans(),
       length=st.one_of(st.none(), st.just("right"), st.integers(0, 10**12).map(str),
                        st.sampled_from(["-5", "1e4", " ", "abc", "10240 10240", "١٢٣", "0x2800"])))
def test_a_download_never_reads_past_the_published_size(tmp_path, monkeypatch, extra, endless, length):
    body = PUBLISHED + bytes(max(extra, 0)) if extra >= 0 else PUBLISHED[:extra]
    headers = {} if length is None else {"Content-Length": str(len(body)) if length == "right" else length}
    response = _Body(headers, body, endless=endless)
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: response)
    md5 = hashlib.md5(PUBLISHED).hexdigest()
    target = tmp_path / "d" / f"f{response.__hash__()}.gz"
    try:
        data.download("http://127.0.0.1:1/f.gz", target, md5, size=len(PUBLISHED), progress=False)
    except DataError:
        assert not target.exists()
    else:
        assert target.read_bytes() == PUBLISHED and not endless and extra == 0
    assert response.given <= len(PUBLISHED) + 1                 # never more than one byte too many
    assert [p for p in target.parent.iterdir() if p.name.endswith(".part")] == []


def test_a_permission_error_is_reported_as_one(tmp_path, monkeypatch):
    write_dataset(tmp_path / "d", n_test=3)

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(data, "open", refuse, raising=False)     # read_idx's open(); root reads anything
    with pytest.raises(DataError, match="permission denied: this user may not read the file") as err:
        data.load("mnist", "test", data_dir=tmp_path / "d")
    assert "corrupt" not in str(err.value) and "gzip" not in str(err.value)
