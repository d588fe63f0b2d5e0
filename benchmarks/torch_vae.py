"""The PyTorch side of the side-by-side benchmark: scratchvae's training protocol in PyTorch.

Used by ``bench_train.py --torch`` (which imports this module only in its PyTorch worker
process). Not part of the package; needs the ``bench`` extra (``pip install -e '.[bench]'``,
i.e. torch==2.13.0).

It is the protocol scratchvae's trainer runs (scratchvae/machinery/runner.py), written the way a
PyTorch user would write it:

    architecture  D - H_1 - ... - H_n - K (mu and logvar heads) - H_n - ... - H_1 - D,
                  ReLU hidden layers, nn.Linear everywhere (784-400-20-400-784 by default)
    likelihood    Bernoulli from logits on grey-level targets x = pixels / 255
    loss          batch mean of  sum_d BCE_with_logits(l, x) + KL(q(z|x) || N(0, I))
                  (the same number scratchvae logs; the PyTorch example sums over the batch
                  instead, which Adam's scale invariance makes the same update up to its eps)
    sampling      one z = mu + exp(logvar / 2) * eps per image (torch.randn_like)
    optimiser     torch.optim.Adam(lr=1e-3), its defaults otherwise (on CPU: the
                  single-tensor implementation; ``adam="foreach"`` / ``"fused"`` selects others)
    data          the uint8 images (N, D) as one tensor; every epoch a fresh torch.randperm;
                  each batch gathered and converted as drawn, ``data[idx].float().div_(255)``;
                  the last batch is smaller (60,000 = 468 x 128 + 96)
    threads       torch.set_num_threads(threads) (intra-op threads of its GEMMs)

    trainer = TorchTrainer(images_u8, batch_size=128, hidden=(400,), latent=20, threads=2)
    seconds, mean_loss = trainer.epoch()        # one timed pass over the data
    trainer.test_nelbo(test_u8)                 # -ELBO on test images (one z each), nats
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class TorchVAE(nn.Module):
    """The MLP VAE; the decoder mirrors the encoder's hidden sizes. forward -> (logits, mu, logvar)."""

    def __init__(self, input_dim=784, hidden=(400,), latent=20):
        super().__init__()
        sizes = [input_dim, *hidden]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fc_mu = nn.Linear(sizes[-1], latent)
        self.fc_logvar = nn.Linear(sizes[-1], latent)
        back = [latent, *hidden[::-1]]
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(back[:-1], back[1:]))
        self.fc_logits = nn.Linear(back[-1], input_dim)

    def encode(self, x):
        h = x
        for layer in self.encoder:
            h = F.relu(layer(h))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        h = z
        for layer in self.decoder:
            h = F.relu(layer(h))
        return self.fc_logits(h)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z), mu, logvar


def negative_elbo(logits, x, mu, logvar):
    """Batch means (loss, rec, kl): rec = sum_d softplus(l) - x l, KL to N(0, I)."""
    b = x.shape[0]
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / b
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / b
    return rec + kl, rec, kl


class TorchTrainer:
    """Holds the model, Adam and the data; ``epoch()`` trains one pass and times it."""

    def __init__(self, images_u8, *, batch_size=128, hidden=(400,), latent=20, lr=1e-3,
                 threads=2, seed=0, adam="default"):
        torch.set_num_threads(int(threads))
        torch.manual_seed(seed)
        self.data = torch.from_numpy(images_u8)            # (N, D) uint8, shares the NumPy memory
        self.batch_size = int(batch_size)
        self.model = TorchVAE(images_u8.shape[1], tuple(hidden), latent)
        options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True},
                   "for-loop": {"foreach": False}}
        if adam not in options:
            raise ValueError(f"adam must be one of {', '.join(options)}, got {adam!r}")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, **options[adam])

    def epoch(self):
        """One shuffled pass over the data; returns (seconds of the loop, mean loss per image)."""
        n, bs = self.data.shape[0], self.batch_size
        self.model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        total = torch.zeros(())
        for i in range(0, n, bs):
            x = self.data[perm[i:i + bs]].float().div_(255.0)       # (B, D) float32 in [0, 1]
            logits, mu, logvar = self.model(x)
            loss, _, _ = negative_elbo(logits, x, mu, logvar)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * x.shape[0]
        seconds = time.perf_counter() - t0
        return seconds, float(total) / n

    @torch.no_grad()
    def test_nelbo(self, images_u8, batch_size=1000):
        """-ELBO (nats per image, one z each) of the given uint8 images: a sanity number only."""
        self.model.eval()
        data, total = torch.from_numpy(images_u8), 0.0
        for i in range(0, data.shape[0], batch_size):
            x = data[i:i + batch_size].float().div_(255.0)
            logits, mu, logvar = self.model(x)
            loss, _, _ = negative_elbo(logits, x, mu, logvar)
            total += float(loss) * x.shape[0]
        return total / data.shape[0]
