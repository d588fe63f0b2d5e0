"""What training prints: the run's description, a progress line within each epoch, a line per epoch.

On a terminal the progress line is rewritten in place (about five times a second) with the
running -ELBO, the KL, images per second and the epoch's time left; elsewhere (a file, a
pipe, CI) only whole lines are written. A stream that fails is dropped, never fatal.
"""
import sys
import time


def describe_run(model, config, n_train, n_test, steps_per_epoch, ckpt_path, position):
    arch = "-".join(map(str, [model.input_dim, *model.hidden_dims, model.latent_dim,
                              *model.hidden_dims[::-1], model.input_dim]))
    if model.conditional:
        arch += f" with the one-hot label y ({model.n_classes} classes) into encoder and decoder"
    text = (f"{model.title} {arch} ({config.activation}, {config.likelihood}); {config.dataset} "
            f"{config.train_split} ({n_train:,} images), test on {config.test_split} ({n_test:,}); "
            f"batch {config.batch_size}, Adam lr {config.lr:g}, {steps_per_epoch} steps/epoch, "
            f"seed {config.seed}\n{step_name(model, config)}")
    if position["epochs_done"] or position["step_in_epoch"]:
        text += (f"\nresuming after epoch {position['epochs_done']}"
                 + (f", step {position['step_in_epoch']}" if position["step_in_epoch"] else ""))
    return text + (f"\ncheckpoints: {ckpt_path}" if ckpt_path is not None else "")


def step_name(model, config):
    """Which code trains: the model's own loss_and_grads (its file) and Adam, or the fused step."""
    if config.engine == "fused":
        return (f"training step: the fused step of scratchvae/fast/fused_step.py ({config.threads} "
                f"{'core' if config.threads == 1 else 'cores'}; the same numbers as vae.py)")
    where = type(model).loss_and_grads
    path = where.__module__.replace(".", "/") + ".py"
    return (f"training step: {where.__qualname__} in {path} ({model.loss_name}), "
            f"Adam in scratchvae/optim.py")


def duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class Log:
    """Progress output: an in-place line within the epoch on a terminal, plain lines otherwise."""

    def __init__(self, stream):
        self.stream = None if stream is False else (sys.stderr if stream is None else stream)
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._shown, self._last = False, 0.0

    def line(self, text):
        if self.stream is None:
            return
        if self._shown:
            self._write("\r\033[K")                            # clear the in-place line
            self._shown = False
        self._write(text + "\n")

    def _write(self, text):
        """Write and flush; a stream that fails (the terminal closed: SIGHUP) is dropped, so
        that losing the log never stops the training or its final save."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    def progress(self, epoch, epochs, step, steps, sums, elapsed, seconds_before, steps_now, kl=True):
        now = time.perf_counter()
        if not self.tty or self.stream is None or (now - self._last < 0.2 and step < steps):
            return
        self._last = now
        rate = sums["n"] / (seconds_before + elapsed) if seconds_before + elapsed > 0 else 0.0
        eta = (steps - step) * elapsed / steps_now
        loss = (f"-ELBO {(sums['rec'] + sums['kl']) / sums['n']:.2f} (KL {sums['kl'] / sums['n']:.2f})"
                if kl else f"-log p(x|z) {sums['rec'] / sums['n']:.2f}")
        self._write(f"\repoch {epoch}/{epochs} {100 * step // steps:3d}% {loss}  {rate:,.0f} img/s  "
                    f"epoch ETA {duration(eta)}\033[K")
        self._shown = self.stream is not None

    def epoch(self, r, epochs, time_left):
        if "test_nelbo" in r:                           # a VAE's record: the ELBO's two terms
            beta = f"  beta {r['beta']:.3g}" if r["beta"] != 1.0 else ""
            losses = (f"train -ELBO {r['train_nelbo']:.3f} (rec {r['train_rec']:.3f} + KL {r['train_kl']:.3f})  "
                      f"test -ELBO {r['test_nelbo']:.3f} (rec {r['test_rec']:.3f} + KL {r['test_kl']:.3f}){beta}")
        else:                                           # the autoencoder: -log p(x|z) alone
            losses = f"train -log p(x|z) {r['train_rec']:.3f}  test -log p(x|z) {r['test_rec']:.3f}"
        self.line(f"epoch {r['epoch']:>{len(str(epochs))}}/{epochs}  {losses}  "
                  f"{r['img_per_s'] or 0:,.0f} img/s  {r['seconds']:.1f} s  "
                  f"time left {duration(time_left)}")
