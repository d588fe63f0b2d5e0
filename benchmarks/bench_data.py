"""How long loading a full dataset takes, and how much memory it needs at its peak.

    python benchmarks/bench_data.py [--dataset fashion-mnist] [--data-dir ../shared/data]

Prints one JSON line. The time is the best of ``--repeat`` loads of the train and test
splits (all times are listed too). ``rss_*`` come from the operating system: the peak
resident set size of a fresh child process before and after it loads both splits.
``traced_peak_mb`` is the most tracemalloc saw allocated at once while loading (it sees
NumPy's buffers). ``uint8_mb`` is the size of the arrays themselves, the floor for both.
``naive_traced_peak_mb`` is the same measure for the obvious reader,
``np.frombuffer(gzip.open(f).read(), offset=16).copy()``, on the two image files.
"""
import argparse
import gzip
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from scratchvae.machinery import data  # noqa: E402

MB = 1e6


def load_both(name, data_dir):
    return [data.load(name, split, data_dir=data_dir, download=False)
            for split in ("train", "test")]


CHILD = """
import resource, sys
sys.path.insert(0, sys.argv[1])
from scratchvae.machinery import data

def peak_rss_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss (KiB on Linux) can carry
    # over the parent's peak across fork+exec, so it is only the fallback.
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) * 1024 / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6

before = peak_rss_mb()
splits = [data.load(sys.argv[2], s, data_dir=sys.argv[3], download=False)
          for s in ("train", "test")]
print(before, peak_rss_mb())
"""


def rss_in_child(name, data_dir):
    """(peak RSS before loading, peak RSS after) in MB, measured in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO_ROOT), name, str(data_dir)],
                         check=True, capture_output=True, text=True)
    before, after = map(float, out.stdout.split())
    return before, after


def naive_traced_peak(data_dir):
    tracemalloc.start()
    for base in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        with gzip.open(Path(data_dir) / f"{base}.gz") as f:
            np.frombuffer(f.read(), np.uint8, offset=16).copy()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / MB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=list(data.DATASETS))
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    directory = data.find_dataset(args.dataset, args.data_dir, download=False)
    rss_before, rss_after = rss_in_child(args.dataset, directory)   # first: a small parent

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        splits = load_both(args.dataset, directory)
        times.append(time.perf_counter() - start)
    del splits

    tracemalloc.start()
    splits = load_both(args.dataset, directory)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    print(json.dumps({
        "dataset": args.dataset,
        "dir": str(directory),
        "images": {s.split: list(s.images.shape) for s in splits},
        "load_seconds_best": round(min(times), 3),
        "load_seconds_all": [round(t, 3) for t in times],
        "uint8_mb": round(sum(s.images.nbytes + s.labels.nbytes for s in splits) / MB, 1),
        "float32_would_be_mb": round(sum(s.images.size for s in splits) * 4 / MB, 1),
        "traced_peak_mb": round(traced_peak / MB, 1),
        "naive_traced_peak_mb": round(naive_traced_peak(directory), 1),
        "rss_peak_before_mb": round(rss_before, 1),
        "rss_peak_after_mb": round(rss_after, 1),
        "rss_peak_increase_mb": round(rss_after - rss_before, 1),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
