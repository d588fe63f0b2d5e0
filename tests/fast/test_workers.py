"""workers.py's process-wide settings: what they change, measured on the process itself."""
import subprocess
import sys
from pathlib import Path

import pytest

from scratchvae.fast.workers import keep_freed_memory

ROOT = Path(__file__).resolve().parents[2]

# One evaluation chunk's Bernoulli log-likelihood, the NumPy way (a new array for every
# intermediate), repeated; prints the page faults (ru_minflt) the repetitions cost.
SNIPPET = """
import resource, sys
import numpy as np
if sys.argv[1] == "import":
    sys.path.insert(0, sys.argv[2])
    import scratchvae                                   # calls workers.keep_freed_memory()
    if not scratchvae.fast.workers.keep_freed_memory():
        print("unsupported"); raise SystemExit
rng = np.random.default_rng(0)
x, l = rng.random((100, 784), dtype=np.float32), rng.standard_normal((10, 100, 784), dtype=np.float32)
def log_px_z(x, l):
    return np.sum(x * l - (np.maximum(l, 0) + np.log1p(np.exp(-np.abs(l)))), axis=-1)
log_px_z(x, l)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    log_px_z(x, l)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode):
    out = subprocess.run([sys.executable, "-c", SNIPPET, mode, str(ROOT)], capture_output=True,
                         text=True, check=True).stdout.strip()
    if out == "unsupported":
        pytest.skip("keep_freed_memory needs glibc's mallopt (Linux)")
    return int(out)


def test_importing_scratchvae_stops_the_page_faults_of_numpys_temporaries():
    """50 repetitions of a 3 MB-per-array computation: with glibc's defaults each repetition
    faults its temporaries' pages in again (about 3,000 a time where this was written); after
    ``import scratchvae`` (which calls workers.keep_freed_memory) they reuse freed memory."""
    if not keep_freed_memory():                         # (import scratchvae has called it already)
        pytest.skip("keep_freed_memory needs glibc's mallopt (Linux)")
    without, with_it = page_faults("plain"), page_faults("import")
    assert without > 50 * 500, without                 # the cost exists where this runs ...
    assert with_it < 50 * 10, with_it                   # ... and is gone
