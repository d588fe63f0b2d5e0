"""The PyTorch example VAE (pytorch/examples, vae/main.py) on Fashion-MNIST: the accuracy reference.

    python benchmarks/pytorch_reference.py [--seed 1] [--epochs 10] [--data-dir DIR] [--threads 2]

Needs torch==2.13.0 (the ``bench`` extra: ``pip install -e '.[bench]'``); not part of the
package and independent of it (it reads the IDX files itself), so its numbers are a
reference that shares no code with scratchvae.

The protocol is the example's, unchanged:
    model      784-400-20-400-784, ReLU; fc21 / fc22 give mu and logvar; sigmoid output
    loss       F.binary_cross_entropy(recon_x, x, reduction="sum") + KLD, summed over the
               batch (the example's loss_function); KLD = -1/2 sum(1 + logvar - mu^2 - exp(logvar))
    data       x = pixels / 255 (transforms.ToTensor's grey levels), train batches of 128
               in a fresh random order every epoch, test batches of 128 in order
    optimiser  Adam(lr=1e-3), 10 epochs, torch.manual_seed(seed)
    test loss  the summed loss over the whole test split / 10,000: the test negative ELBO
               (one z per image), in nats per image, as the example prints it
Then, with the same estimator as scratchvae's ``evaluate`` (scratchvae/machinery/evaluate.py), the
importance-sampled (IWAE) estimate of -log p(x) with k = 1000 samples on the first 1000
test images:
    -log p(x) ~ -( logsumexp_l log w_l - log k ),  log w_l = log p(x|z_l) + log p(z_l) - log q(z_l|x),
    z_l = mu + sigma * eps_l,  log p(x|z) from the decoder's logits (Bernoulli, grey-level x).
Differences from the example that do not change what is computed: the data come from the
IDX files as one uint8 tensor instead of a DataLoader; no CUDA / MPS; no image files saved.

Prints one line per epoch (train loss, test loss, seconds) and a final JSON line with
test_nelbo, is_nll (and its standard error), the settings and the peak RSS of the process.
Measured values (3 seeds) are in benchmarks/reference_run.sh and docs/results.md.
"""
import argparse
import gzip
import json
import math
import struct
import time
from pathlib import Path

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    raise SystemExit("pytorch_reference.py needs PyTorch: pip install -e '.[bench]' (torch==2.13.0)") from None

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def load_images(data_dir, split):
    """uint8 tensor (N, 784) from the IDX file of ``split`` (gzipped or not)."""
    base = Path(data_dir) / FILES[split]
    path = base.with_name(base.name + ".gz") if base.with_name(base.name + ".gz").exists() else base
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise SystemExit(f"{path}: not an IDX image file (magic {magic})")
        images = np.frombuffer(f.read(), np.uint8)
    if images.size != n * rows * cols:
        raise SystemExit(f"{path}: truncated ({images.size} of {n * rows * cols} pixels)")
    return torch.from_numpy(images.reshape(n, rows * cols).copy())


class VAE(nn.Module):
    """pytorch/examples vae/main.py's model (decode returns logits here; forward applies sigmoid)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode_logits(self, z):
        return self.fc4(F.relu(self.fc3(z)))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return torch.sigmoid(self.decode_logits(z)), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """The example's loss: reconstruction + KL divergence summed over all elements and the batch."""
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


@torch.no_grad()
def importance_sampled_nll(model, x, k, chunk=100, batch_size=100):
    """Per-image estimate of -log p(x) from k importance samples (the IWAE bound), (N,) tensor."""
    log2pi = math.log(2 * math.pi)
    out = []
    for xb in x.split(batch_size):
        mu, logvar = model.encode(xb)
        std = torch.exp(0.5 * logvar)
        log_w = []
        for c0 in range(0, k, chunk):
            eps = torch.randn(min(chunk, k - c0), *mu.shape)              # (c, n, K)
            z = mu + std * eps
            logits = model.decode_logits(z)                               # (c, n, D)
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none").sum(-1)
            log_pz = -0.5 * (z ** 2 + log2pi).sum(-1)
            log_qz = -0.5 * (eps ** 2 + logvar + log2pi).sum(-1)
            log_w.append(log_px_z + log_pz - log_qz)                      # (c, n)
        out.append(-(torch.logsumexp(torch.cat(log_w), 0) - math.log(k)))
    return torch.cat(out)


def peak_rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help="directory with the Fashion-MNIST IDX files (default: %(default)s)")
    ap.add_argument("--is-k", type=int, default=1000, help="importance samples per image")
    ap.add_argument("--is-limit", type=int, default=1000, help="first test images for the IS estimate")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train, test = load_images(args.data_dir, "train"), load_images(args.data_dir, "test")
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    B = args.batch_size
    t_start = time.time()
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        train_loss = 0.0
        perm = torch.randperm(len(train))
        for i in range(0, len(train), B):
            x = train[perm[i:i + B]].float() / 255
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for i in range(0, len(test), B):
                x = test[i:i + B].float() / 255
                recon, mu, logvar = model(x)
                test_loss += loss_function(recon, x, mu, logvar).item()
        print(f"seed {args.seed} epoch {epoch} train {train_loss / len(train):.3f} "
              f"test {test_loss / len(test):.3f} ({time.time() - t0:.1f} s)", flush=True)
    train_seconds = time.time() - t_start
    nll = importance_sampled_nll(model, test[:args.is_limit].float() / 255, args.is_k)
    print(json.dumps({"implementation": f"pytorch/examples vae/main.py, torch {torch.__version__}",
                      "seed": args.seed, "epochs": args.epochs, "threads": args.threads,
                      "test_nelbo": test_loss / len(test), "train_loss": train_loss / len(train),
                      "is_nll": nll.mean().item(),
                      "is_nll_sem": (nll.std() / math.sqrt(len(nll))).item() if len(nll) > 1 else 0.0,
                      "is_k": args.is_k, "is_n": len(nll), "train_seconds": round(train_seconds, 1),
                      "peak_rss_mb": round(peak_rss_mb(), 1)}), flush=True)


if __name__ == "__main__":
    main()
