"""Training throughput and peak memory of scratchvae, alone or side by side with PyTorch.

    python benchmarks/bench_train.py [--epochs 5] [--warmup 1] [--engine plain] [--threads 2]
                                     [--batch 128] [--hidden 400] [--latent 20] [--data-dir DIR]
    python benchmarks/bench_train.py --torch [--rounds 7] [--warmup 1] [...the same options]

What is measured (benchmarks/README.md explains the numbers):

* scratchvae is measured through its real trainer, ``scratchvae.machinery.runner.train``: batch
  drawing (shuffle, uint8 -> float32 / 255), eps, the divergence guard and Adam are all
  inside the timed loop; images/s is the trainer's own ``history[i]["img_per_s"]`` (the
  training loop of one epoch, without the end-of-epoch test evaluation and checkpoint).
  The data is the full Fashion-MNIST train split (60,000 images), the protocol the
  PyTorch example VAE's (784-400-20-400-784, ReLU, Bernoulli on grey levels, Adam 1e-3,
  batch 128, one z per image).
* Alone (default): ONE ``train()`` call of warmup + epochs epochs, exactly a user's
  ``scratchvae train`` run (it loads the data itself, writes a checkpoint every epoch into
  a temporary directory, or --out). Reported: the median img/s of the epochs after the
  warm-up, and the run's peak memory (below).
* Side by side (--torch): two worker processes, scratchvae and the PyTorch implementation
  of benchmarks/torch_vae.py (same data, architecture, batch, Adam, thread count). Each
  round runs one epoch of each, one after the other, alternating who goes first. The
  scratchvae worker trains round r by resuming its own checkpoint of round r - 1
  (``train(TrainConfig(epochs=r, ...), resume=checkpoint)``), so both models keep
  training across rounds, as in one long run; PyTorch's worker keeps its model and
  optimiser. ``--warmup`` epochs of each come first and are not measured.
* The machine may be shared. Around every epoch the parent records how many CPUs' worth
  of time *other* processes used (/proc/stat minus our own processes, helpers included):
  "foreign_cpus". Epochs (alone) or rounds (side by side) where that reached --max-foreign
  are flagged and left out of the medians when enough clean ones exist (the summary says
  which were used). Before each round the parent waits up to --quiet-wait seconds for quiet.
* Peak memory. The fused engine's process backend runs TWO processes: the trainer and a
  forked helper, which share most pages (the data, the code, the parameters in shared
  memory). Reported: the trainer's peak RSS (VmHWM), the helper's peak RSS (its VmHWM,
  sampled while it lives), and the peak of the combined proportional set size, Pss(trainer)
  + Pss(helper) from /proc/<pid>/smaps_rollup, sampled every --mem-interval seconds. The
  combined Pss counts every page once, so it is the number that says what the run costs
  ("memory_measure" in the summary). The sum of the two RSS peaks double-counts
  shared pages (an upper bound). The PyTorch worker is one process: its VmHWM. Side by
  side, each worker is sampled only during its own epochs.
* The kernels: these machines may pin OpenBLAS to older kernels through OPENBLAS_CORETYPE
  (benchmarks/README.md, "Which OpenBLAS kernels"); the summary reports "blas_core", the
  variable as the worker saw it, and PyTorch's CPU capability.
* The GEMM floor: in the scratchvae worker, after training, the matrix products of one
  step alone (forward, weight gradients, input gradients of every layer but the first;
  the two heads as one (H, 2K) product) on random float32 arrays of the batch's shapes,
  timed with 1 and with 2 OpenBLAS threads: median (and min) over 7 blocks of 100 steps.
  "gemm_floor_share" = floor (with the run's thread count) / measured ms per step: the
  fraction of a training step the products alone would take. With two workers the ideal
  is half the 1-thread floor per step: "gemm_floor_share_2workers".

Every epoch prints one JSON line; the last line is the summary JSON.
Torch is imported only by the PyTorch worker process, only with --torch.
"""
import argparse
import gc
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "fashion-mnist"
HZ = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


# =======================================================================================
# /proc: CPU time of process trees, other processes' load, memory
# =======================================================================================

def children(pid):
    """Direct children of ``pid`` (live or zombie), from /proc/<pid>/task/*/children."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids += [int(c) for c in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def cpu_ticks(pid, reaped_children=True):
    """utime + stime of ``pid`` (plus cutime + cstime: its children already waited for)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def busy_ticks():
    """CPU ticks the whole machine spent busy so far (user nice system irq softirq)."""
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6]


def status_kb(pid, key):
    """A field of /proc/<pid>/status in kB (VmHWM, VmRSS), or 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    """Proportional set size of ``pid`` in kB (shared pages divided among their users)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class LoadMeter:
    """Other processes' CPU use between two snapshots: busy ticks minus our processes' ticks.

    Ours: this process and its reaped children (the fused evaluation's helper, once closed),
    each worker (with its reaped children) and the workers' live children.
    """

    def __init__(self, worker_pids=()):
        self.worker_pids = list(worker_pids)

    def snapshot(self):
        t = os.times()
        own = (t.user + t.system + t.children_user + t.children_system) * HZ
        for pid in self.worker_pids:
            own += cpu_ticks(pid)
            own += sum(cpu_ticks(kid, reaped_children=False) for kid in children(pid))
        return time.perf_counter(), busy_ticks(), own

    @staticmethod
    def foreign_cpus(a, b):
        seconds = b[0] - a[0]
        if seconds <= 0:
            return 0.0
        return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / HZ / seconds)


def wait_quiet(max_cpus, window=1.0, timeout=60.0, meter=None):
    """Wait until other processes used < max_cpus CPUs over ``window`` s; False on timeout."""
    meter = meter or LoadMeter()
    t_end = time.perf_counter() + timeout
    while time.perf_counter() < t_end:
        a = meter.snapshot()
        time.sleep(window)
        if LoadMeter.foreign_cpus(a, meter.snapshot()) < max_cpus:
            return True
    return False


class MemorySampler(threading.Thread):
    """Samples a worker's process tree every ``interval`` s: peak combined Pss, peak helper RSS.

    ``pause()`` / ``resume()``: side by side, only the worker whose epoch runs is sampled
    (an idle worker's memory does not change, and reading a 400 MB process's smaps_rollup
    five times a second costs the running one CPU time that no meter counts as foreign).
    """

    def __init__(self, pid, interval):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.pss_peak_kb = self.helper_hwm_kb = self.helper_pss_peak_kb = 0
        self.helpers_seen = set()
        self.samples = 0
        self._halt = threading.Event()
        self._active = threading.Event()
        self._active.set()

    def run(self):
        while not self._halt.is_set():
            self._active.wait()
            if self._halt.is_set():
                return
            self.sample()
            self._halt.wait(self.interval)

    def pause(self):
        self._active.clear()

    def resume(self):
        self._active.set()

    def sample(self):
        kids = children(self.pid)
        helper_pss = sum(pss_kb(k) for k in kids)
        total = pss_kb(self.pid) + helper_pss
        self.pss_peak_kb = max(self.pss_peak_kb, total)
        self.helper_pss_peak_kb = max(self.helper_pss_peak_kb, helper_pss)
        for k in kids:
            self.helpers_seen.add(k)
            self.helper_hwm_kb = max(self.helper_hwm_kb, status_kb(k, "VmHWM"))
        self.samples += 1

    def stop(self):
        self._halt.set()
        self._active.set()
        self.join()

    def report(self):
        return {"pss_total_peak_mb": round(self.pss_peak_kb / 1024, 1),
                "helper_peak_rss_mb": round(self.helper_hwm_kb / 1024, 1),
                "helper_pss_peak_mb": round(self.helper_pss_peak_kb / 1024, 1),
                "helper_processes_seen": len(self.helpers_seen), "memory_samples": self.samples}


# =======================================================================================
# The GEMM floor: one step's matrix products alone
# =======================================================================================

def step_gemms(batch, input_dim, hidden, latent):
    """(name, product, D_in, D_out) for every matrix product of one training step.

    Layers (D_in, D_out): the encoder's hidden layers, the two heads as one (H, 2K) layer,
    the decoder's hidden layers, the logits layer. For each, with a (B, D_in) its input,
    W (D_in, D_out) its weight and d (B, D_out) the gradient at its output:
        "a@W"    the forward product
        "a.T@d"  the weight gradient (a.T is a transposed view, as in the step)
        "d@W.T"  the input gradient, for every layer but the first (nobody needs dloss/dx)
    """
    enc = [input_dim, *hidden]
    dec = [latent, *hidden[::-1], input_dim]
    layers = [(f"enc{i + 1}", a, b) for i, (a, b) in enumerate(zip(enc[:-1], enc[1:]))]
    layers += [("heads", enc[-1], 2 * latent)]
    layers += [(f"dec{i + 1}", a, b) for i, (a, b) in enumerate(zip(dec[:-1], dec[1:]))]
    out = []
    for i, (name, d_in, d_out) in enumerate(layers):
        out += [(name, "a@W", d_in, d_out), (name, "a.T@d", d_in, d_out)]
        if i > 0:
            out.append((name, "d@W.T", d_in, d_out))
    return out


def gemm_floor(batch, input_dim, hidden, latent, reps=100, blocks=7):
    """Median and min ms of one step's products, with 1 and with 2 OpenBLAS threads."""
    import numpy as np
    from scratchvae.fast.fused_step import set_blas_threads

    rng = np.random.default_rng(0)
    products = []                                         # (left, right, out)
    for _, product, d_in, d_out in step_gemms(batch, input_dim, hidden, latent):
        a = rng.standard_normal((batch, d_in), dtype=np.float32)
        W = rng.standard_normal((d_in, d_out), dtype=np.float32)
        d = rng.standard_normal((batch, d_out), dtype=np.float32)
        left, right = {"a@W": (a, W), "a.T@d": (a.T, d), "d@W.T": (d, W.T)}[product]
        products.append((left, right, np.empty((left.shape[0], right.shape[1]), np.float32)))
    mflop = sum(2 * l.shape[0] * l.shape[1] * r.shape[1] for l, r, _ in products) / 1e6

    def one_step():
        for a, b, out in products:
            np.matmul(a, b, out=out)

    previous = set_blas_threads(1)
    result = {"gemm_mflop_per_step": round(mflop, 1), "gemm_products": len(products)}
    try:
        for threads in (1, 2):
            set_blas_threads(threads)
            for _ in range(20):
                one_step()
            times = []
            for _ in range(blocks):
                t0 = time.perf_counter()
                for _ in range(reps):
                    one_step()
                times.append((time.perf_counter() - t0) / reps * 1e3)
            result[f"gemm_floor_ms_blas{threads}"] = round(statistics.median(times), 3)
            result[f"gemm_floor_min_ms_blas{threads}"] = round(min(times), 3)
    finally:
        if previous is not None:
            set_blas_threads(previous)
    return result


# =======================================================================================
# Workers (child processes). Protocol: one command per stdin line, JSON lines on stdout.
# =======================================================================================

def blas_environment():
    """The OpenBLAS settings from the environment (some machines here pin the kernel set)."""
    return {k.lower(): os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}


def own_peak_rss_mb():
    return round(status_kb(os.getpid(), "VmHWM") / 1024, 1)


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _EpochMarks:
    """A ``log`` stream for train(): turns each finished epoch's line into a JSON mark on
    stdout, so the parent knows when an epoch ended (written after the timed loop)."""

    def __init__(self):
        self.epoch = 0

    def write(self, text):
        for line in text.splitlines():
            if line.startswith("epoch "):
                self.epoch += 1
                reply({"epoch_end": self.epoch})

    def flush(self):
        pass

    def isatty(self):
        return False


def scratchvae_worker(spec):
    from scratchvae.fast.fused_step import set_blas_threads
    from scratchvae.machinery.runner import TrainConfig, train

    # BLAS threads = the run's thread count (the fused step with 2 workers sets 1 itself);
    # so --threads 1 means one core for every engine, and --engine plain --threads 2 two.
    set_blas_threads(spec["threads"])
    run_dir = spec["out"] or tempfile.mkdtemp(prefix="bench_train_")

    def config(epochs):
        return TrainConfig(dataset="fashion-mnist", data_dir=spec["data_dir"], download=False,
                           hidden=tuple(spec["hidden"]), latent=spec["latent"],
                           batch_size=spec["batch"], lr=1e-3, epochs=epochs, seed=spec["seed"],
                           engine=spec["engine"], threads=spec["threads"], out=run_dir)

    images = None
    rounds = 0
    from scratchvae.fast.workers import blas_core
    reply({"ready": "scratchvae", "pid": os.getpid(), "blas_core": blas_core(), **blas_environment()})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "run":                     # one continuous training run of N epochs
            epochs = int(cmd[1])
            _, history = train(config(epochs), log=_EpochMarks(), overwrite=True)
            reply({"history": history})
        elif cmd[0] == "epoch":                 # one more epoch, resuming the previous round
            if images is None:
                from scratchvae.machinery.data import load
                images = [load("fashion-mnist", s, spec["data_dir"], download=False).images
                          for s in ("train", "test")]
            rounds += 1
            resume = os.path.join(run_dir, "checkpoint.npz") if rounds > 1 else None
            _, history = train(config(rounds), resume=resume, train_images=images[0],
                               test_images=images[1], log=False, overwrite=rounds == 1)
            # Free the finished round's model and fused step now: the step and its workers
            # form a reference cycle, which would otherwise keep ~15 MB per round alive
            # until the cyclic garbage collector runs (outside the timed loop either way).
            gc.collect()
            h = history[-1]
            reply({"epoch": h["epoch"], "img_per_s": h["img_per_s"],
                   "train_seconds": len(images[0]) / h["img_per_s"], "train_loss": h["train_loss"],
                   "test_nelbo": h["test_nelbo"], "peak_rss_mb": own_peak_rss_mb()})
        elif cmd[0] == "floor":
            reply(gemm_floor(spec["batch"], 784, tuple(spec["hidden"]), spec["latent"]))
        elif cmd[0] == "rss":
            reply({"peak_rss_mb": own_peak_rss_mb()})
        elif cmd[0] == "quit":
            break
    if not spec["out"]:
        shutil.rmtree(run_dir, ignore_errors=True)


def torch_worker(spec):
    sys.path.insert(0, str(HERE))
    from scratchvae.machinery.data import load
    from torch_vae import TorchTrainer        # imports torch: only in this worker process

    train_u8, test_u8 = (load("fashion-mnist", s, spec["data_dir"], download=False).images
                         for s in ("train", "test"))
    trainer = TorchTrainer(train_u8, batch_size=spec["batch"], hidden=tuple(spec["hidden"]),
                           latent=spec["latent"], threads=spec["threads"], seed=spec["seed"],
                           adam=spec["torch_adam"])
    import torch
    reply({"ready": "torch", "pid": os.getpid(), "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(),
           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()})
    epoch = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "epoch":
            epoch += 1
            seconds, loss = trainer.epoch()
            reply({"epoch": epoch, "img_per_s": len(train_u8) / seconds, "train_seconds": seconds,
                   "train_loss": loss, "test_nelbo": trainer.test_nelbo(test_u8),
                   "peak_rss_mb": own_peak_rss_mb()})
        elif cmd[0] == "rss":
            reply({"peak_rss_mb": own_peak_rss_mb()})
        elif cmd[0] == "quit":
            break


# =======================================================================================
# The parent: starts workers, drives them, measures load and memory, summarises
# =======================================================================================

class Worker:
    def __init__(self, kind, spec, mem_interval):
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--spec", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(REPO))
        self.ready = self.read()
        self.sampler = MemorySampler(self.proc.pid, mem_interval)
        self.sampler.start()

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench_train: the {self.kind} worker stopped (see its error above)")
        return json.loads(line)

    def ask(self, cmd):
        self.send(cmd)
        return self.read()

    def close(self):
        self.sampler.stop()
        self.send("quit")
        self.proc.stdin.close()
        self.proc.wait()


def emit(obj):
    print(json.dumps(obj), flush=True)


def spec_of(args):
    return {"data_dir": str(args.data_dir), "batch": args.batch, "hidden": args.hidden,
            "latent": args.latent, "threads": args.threads, "engine": args.engine,
            "seed": args.seed, "out": str(args.out) if args.out else None,
            "torch_adam": args.torch_adam}


def arch_name(args):
    return "-".join(map(str, [784, *args.hidden, args.latent, *args.hidden[::-1], 784]))


def common_summary(args):
    return {"batch": args.batch, "threads": args.threads, "arch": arch_name(args),
            "engine": args.engine, "data": "fashion-mnist train (60,000 images)",
            "max_foreign": args.max_foreign}


def floor_fields(floor, threads, ms_per_step):
    out = dict(floor)
    out["ms_per_step"] = round(ms_per_step, 3)
    out["gemm_floor_share"] = round(floor[f"gemm_floor_ms_blas{threads}"] / ms_per_step, 3)
    out["gemm_floor_share_2workers"] = round(floor["gemm_floor_ms_blas1"] / 2 / ms_per_step, 3)
    return out


def run_alone(args):
    """One continuous train() run; per-epoch img/s and foreign load; memory; GEMM floor."""
    worker = Worker("scratchvae", spec_of(args), args.mem_interval)
    meter = LoadMeter([worker.proc.pid])
    total = args.warmup + args.epochs
    if args.quiet_wait > 0 and not wait_quiet(args.max_foreign / 2, timeout=args.quiet_wait, meter=meter):
        print("bench_train: the machine did not become quiet; measuring anyway", file=sys.stderr)
    marks = [meter.snapshot()]
    worker.send(f"run {total}")
    while True:
        msg = worker.read()
        if "epoch_end" in msg:
            marks.append(meter.snapshot())
            continue
        history = msg["history"]
        break
    worker.sampler.sample()
    rss = worker.ask("rss")
    a = meter.snapshot()
    floor = worker.ask("floor")
    floor["gemm_floor_foreign_cpus"] = round(LoadMeter.foreign_cpus(a, meter.snapshot()), 3)
    worker.close()
    epochs = []
    for i, h in enumerate(history):
        foreign = LoadMeter.foreign_cpus(marks[i], marks[i + 1]) if i + 1 < len(marks) else None
        rec = {"impl": "scratchvae", "epoch": h["epoch"], "warmup": i < args.warmup,
               "img_per_s": round(h["img_per_s"], 1), "train_loss": round(h["train_loss"], 3),
               "test_nelbo": round(h["test_nelbo"], 3), "foreign_cpus": round(foreign, 3)}
        epochs.append(rec)
        emit(rec)
    measured = [e for e in epochs if not e["warmup"]]
    clean = [e for e in measured if e["foreign_cpus"] < args.max_foreign]
    used = clean if len(clean) >= max(1, (len(measured) + 1) // 2) else measured
    img_per_s = statistics.median(e["img_per_s"] for e in used)
    steps = math.ceil(60000 / args.batch)
    mem = worker.sampler.report()
    summary = {"summary": True, "impl": "scratchvae", "img_per_s": round(img_per_s),
               "img_per_s_epochs": [e["img_per_s"] for e in used],
               "epochs_used": "clean" if used is clean else "all measured (too few clean)",
               "clean_epochs": len(clean), "measured_epochs": len(measured),
               "foreign_cpus_max": max(e["foreign_cpus"] for e in measured),
               "peak_rss_mb": rss["peak_rss_mb"], **mem,
               "rss_sum_peak_mb": round(rss["peak_rss_mb"] + mem["helper_peak_rss_mb"], 1),
               "memory_measure": "pss_total_peak_mb (trainer + helper, shared pages counted once)",
               "final_test_nelbo": epochs[-1]["test_nelbo"],
               "blas_core": worker.ready["blas_core"],
               "openblas_coretype_env": worker.ready["openblas_coretype"],
               **common_summary(args),
               **floor_fields(floor, args.threads, 60000 / img_per_s / steps * 1e3)}
    emit(summary)


def run_side_by_side(args):
    """Alternate epochs of scratchvae and PyTorch in two worker processes; summarise."""
    spec = spec_of(args)
    workers = {"scratchvae": Worker("scratchvae", spec, args.mem_interval),
               "torch": Worker("torch", spec, args.mem_interval)}
    kinds = list(workers)
    meter = LoadMeter([w.proc.pid for w in workers.values()])
    workers_ready = {k: w.ready for k, w in workers.items()}
    emit({"workers": workers_ready})
    for w in workers.values():
        w.sampler.pause()

    def epoch_of(kind):
        workers[kind].sampler.resume()
        a = meter.snapshot()
        r = workers[kind].ask("epoch")
        r["foreign_cpus"] = round(LoadMeter.foreign_cpus(a, meter.snapshot()), 3)
        workers[kind].sampler.pause()
        return r

    for _ in range(args.warmup):
        for kind in kinds:
            emit({"warmup": True, "impl": kind, **epoch_of(kind)})
    rounds, i = [], 0
    while sum(r["clean"] for r in rounds) < args.rounds and i < args.rounds + args.extra_rounds:
        if args.quiet_wait > 0:
            wait_quiet(args.max_foreign / 2, timeout=args.quiet_wait, meter=meter)
        order = kinds if i % 2 == 0 else kinds[::-1]
        rnd = {"round": i, "first": order[0]}
        for kind in order:
            rnd[kind] = epoch_of(kind)
        rnd["ratio"] = rnd["scratchvae"]["img_per_s"] / rnd["torch"]["img_per_s"]
        rnd["clean"] = all(rnd[k]["foreign_cpus"] < args.max_foreign for k in kinds)
        rounds.append(rnd)
        emit({"round": i, "first": order[0], "clean": rnd["clean"], "ratio": round(rnd["ratio"], 3),
              **{f"{k}_img_per_s": round(rnd[k]["img_per_s"]) for k in kinds},
              **{f"{k}_foreign_cpus": rnd[k]["foreign_cpus"] for k in kinds},
              **{f"{k}_train_loss": round(rnd[k]["train_loss"], 3) for k in kinds}})
        i += 1
    for w in workers.values():
        w.sampler.sample()
    rss = {k: w.ask("rss") for k, w in workers.items()}
    a = meter.snapshot()
    floor = workers["scratchvae"].ask("floor")
    floor["gemm_floor_foreign_cpus"] = round(LoadMeter.foreign_cpus(a, meter.snapshot()), 3)
    mem = {k: w.sampler.report() for k, w in workers.items()}
    for w in workers.values():
        w.close()

    clean = [r for r in rounds if r["clean"]]
    used = clean if clean else rounds
    med = statistics.median
    ratios = [r["ratio"] for r in used]
    sv = med(r["scratchvae"]["img_per_s"] for r in used)
    steps = math.ceil(60000 / args.batch)
    summary = {"summary": True, "mode": "side by side",
               "rounds_used": "clean" if clean else "all (none clean)",
               "clean_rounds": len(clean), "all_rounds": len(rounds),
               "foreign_cpus_max_in_used": max(r[k]["foreign_cpus"] for r in used for k in kinds),
               "scratchvae_img_per_s": round(sv),
               "torch_img_per_s": round(med(r["torch"]["img_per_s"] for r in used)),
               "ratio_median": round(med(ratios), 3), "ratio_min": round(min(ratios), 3),
               "ratio_max": round(max(ratios), 3),
               "ratio_median_all_rounds": round(med(r["ratio"] for r in rounds), 3),
               "img_per_s": round(sv),
               "peak_rss_mb": rss["scratchvae"]["peak_rss_mb"],
               "helper_peak_rss_mb": mem["scratchvae"]["helper_peak_rss_mb"],
               "pss_total_peak_mb": mem["scratchvae"]["pss_total_peak_mb"],
               "torch_peak_rss_mb": rss["torch"]["peak_rss_mb"],
               "torch_pss_peak_mb": mem["torch"]["pss_total_peak_mb"],
               "memory_note": "the scratchvae worker resumes a checkpoint every round; "
                              "the memory of one continuous run is bench_train.py without --torch",
               "final_train_loss": {k: round(used[-1][k]["train_loss"], 3) for k in kinds},
               "final_test_nelbo": {k: round(used[-1][k]["test_nelbo"], 3) for k in kinds},
               "blas_core": workers_ready["scratchvae"]["blas_core"],
               "openblas_coretype_env": workers_ready["scratchvae"]["openblas_coretype"],
               "torch_cpu_capability": workers_ready["torch"]["torch_cpu_capability"],
               "torch_adam": args.torch_adam, "torch_ms_per_step":
                   round(60000 / med(r["torch"]["img_per_s"] for r in used) / steps * 1e3, 3),
               **common_summary(args),
               **floor_fields(floor, args.threads, 60000 / sv / steps * 1e3)}
    emit(summary)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch", action="store_true",
                    help="side by side with PyTorch (benchmarks/torch_vae.py; needs torch==2.13.0)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help="directory with the Fashion-MNIST IDX files (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", type=int, nargs="*", default=[400], help="hidden sizes (default: 400)")
    ap.add_argument("--latent", type=int, default=20)
    ap.add_argument("--threads", type=int, choices=(1, 2), default=2,
                    help="cores for both implementations (scratchvae's fused step and BLAS; "
                         "torch.set_num_threads)")
    ap.add_argument("--engine", choices=("plain", "fused"), default="plain",
                    help="scratchvae's training step (TrainConfig.engine)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured epochs first (each implementation)")
    ap.add_argument("--epochs", type=int, default=5, help="measured epochs (alone)")
    ap.add_argument("--rounds", type=int, default=7, help="measured rounds wanted (side by side)")
    ap.add_argument("--extra-rounds", type=int, default=6,
                    help="at most this many more rounds while fewer than --rounds are clean")
    ap.add_argument("--max-foreign", type=float, default=0.15,
                    help="an epoch is clean if other processes used fewer CPUs than this")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="wait up to this many seconds for a quiet machine before a run / each round")
    ap.add_argument("--mem-interval", type=float, default=0.2, help="memory sampling period (s)")
    ap.add_argument("--torch-adam", choices=("default", "foreach", "fused", "for-loop"), default="default",
                    help="torch.optim.Adam implementation (default: its own default on CPU)")
    ap.add_argument("--out", type=Path, help="keep scratchvae's run directory here (default: a temporary one)")
    ap.add_argument("--worker", choices=("scratchvae", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        (scratchvae_worker if args.worker == "scratchvae" else torch_worker)(json.loads(args.spec))
        return
    for name in ("batch", "latent", "epochs", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if any(h < 1 for h in args.hidden):
        ap.error("--hidden sizes must be positive")
    if args.torch and importlib.util.find_spec("torch") is None:     # look, don't import
        ap.error("--torch needs PyTorch: pip install -e '.[bench]' (torch==2.13.0)")
    if not args.data_dir.is_dir():
        ap.error(f"--data-dir {args.data_dir} is not a directory with the Fashion-MNIST IDX files")
    (run_side_by_side if args.torch else run_alone)(args)


if __name__ == "__main__":
    main()
