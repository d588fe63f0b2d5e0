r"""Explore a trained VAE in the browser: one self-contained HTML page, written from NumPy.

    scratchvae explore RUN/checkpoint.npz --out explorer.html

The page (template: ``explorer.html`` beside this file) shows

- the latent map: the encoder means mu of test digits, coloured by label, over a faint grid of
  decoded digits; pointing anywhere decodes that z into a large digit (the decoder's mean, or a
  sample x~ ~ p(x|z));
- a 28 x 28 canvas to draw on: q(z|x) of the drawing as its mean and 1 sigma / 2 sigma ellipses
  on the map, the reconstruction at z = mu, and the loss of slide 15 for that one digit,
  reconstruction + KL = negative ELBO in nats (at z = mu, and with a few samples of eps);
- for K > 2, one slider per latent dimension (the first dozen); two chosen dimensions drive the map.

Nothing is fetched: the weights travel inside the file as base64 float32, and the page's
JavaScript computes the same layers as vae.py (dense = x W + b, the activation, sigmoid or
the Gaussian head). A Content-Security-Policy meta tag forbids every network request and
runs only the page's own script and style, named by their SHA-256 hashes, so nothing else
inline can run even if it got into the page. Nothing else can get in: the title, the data's
source and the label names (a checkpoint's path can hold any text) reach the page as JSON
with every <, > and & written as \u003c, \u003e, \u0026, which cannot end the data's
<script> block or open a comment there, and the script shows them as text, never as markup.
From the browser console, ``scratchvae.decode(z)`` returns what ``VAE.decode_mean`` returns,
``scratchvae.encode(pixels)`` what ``VAE.encode`` returns (tests/pictures/test_explore.py checks both
in a real browser), and ``scratchvae.loss(pixels, eps)`` what ``VAE.loss`` returns.
"""
import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ..machinery.files import write_bytes_atomic
from ..vae import VAE

TEMPLATE = Path(__file__).with_name("explorer.html")
FIELDS = ("__CSP__", "__TITLE__", "__DATA__")           # what explorer_html fills into the template


def _sha256(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(template):
    """What the page may load and run: nothing but its own <script> and <style>, by their hashes.

    Implements:  script-src 'sha256-<base64 SHA-256 of the script's text>', style-src the same for
                 the style sheet (CSP level 2: a hash allows that one inline element, exactly as
                 written; any other inline script, event handler or style attribute is refused);
                 no fetch, image, font, frame, form target or <base> (default-src, base-uri and
                 form-action 'none': the last two do not fall back to default-src).
    The JSON block (type="application/json") is data, not a script: the policy does not apply.
    """
    script = re.findall(r"<script>(.*?)</script>", template, re.S)
    style = re.findall(r"<style>(.*?)</style>", template, re.S)
    fixed = len(script) == len(style) == 1 and not any(f in script[0] + style[0] for f in FIELDS)
    if not fixed or "\r" in template:                   # (the HTML parser reads CR LF as LF: another hash)
        raise ValueError(f"{TEMPLATE}: the page needs one <script> and one <style>, fixed text (LF line ends)")
    return (f"default-src 'none'; script-src {_sha256(script[0])}; style-src {_sha256(style[0])}; "
            f"base-uri 'none'; form-action 'none'")


CSP = content_security_policy(TEMPLATE.read_text(encoding="utf-8"))
JS_ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus")      # what the page's script computes
JS_LIKELIHOODS = ("bernoulli", "gaussian")
MAX_POINTS = 3000         # encoded test digits on the map by default
SLIDER_DIMS = 12          # the page shows sliders for the first dozen latent dimensions
FASHION_LABELS = ["T-shirt", "trouser", "pullover", "dress", "coat",
                  "sandal", "shirt", "sneaker", "bag", "boot"]


def explorer_html(model, images=None, labels=None, title="scratchvae", source="", label_names=None):
    """The page as a string.

    Parameters
    ----------
    model : VAE             a trained model; its latent_dim >= 2, input_dim a square (28 x 28)
    images : (N, D) array   optional test digits in [0, 1]: their encoder means become the
                            map's dots (all N of them: slice before), one per label the
                            "start from a test digit" buttons
    labels : (N,) ints      their labels 0..9 (the dots' colours)
    title, source : str     shown on the page (e.g. the checkpoint, "mnist test[9000:]")
    label_names : list      ten names for the legend (e.g. FASHION_LABELS), default the digits
    """
    check_explorable(model)
    if label_names is not None and (len(label_names) != 10 or not all(isinstance(s, str) for s in label_names)):
        raise ValueError(f"label_names must be ten strings, one per label, got {label_names!r:.80}")
    data = {"title": title, "model": {"input_dim": model.input_dim, "hidden_dims": list(model.hidden_dims),
                                      "latent_dim": model.latent_dim, "activation": model.activation,
                                      "likelihood": model.likelihood},
            "params": _layers(model), "range": 3.0, "axes": [0, 1], "points": None, "examples": None,
            "label_names": label_names}
    if images is not None and len(images):
        images = np.asarray(images)
        if labels is None:
            raise ValueError("the test digits need their labels (the dots' colours)")
        labels = np.asarray(labels, dtype=np.uint8)
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
        mu, _ = model.encode(images)                                      # (N, K)
        shown = mu[:, :SLIDER_DIMS]                                       # the dimensions a map can show
        data["range"] = map_range(shown)
        data["axes"] = sorted(np.argsort(-shown.var(axis=0), kind="stable")[:2].tolist())   # the most spread
        data["points"] = {"mu": _b64(shown), "labels": _b64(labels), "dims": shown.shape[1],
                          "source": source or f"{len(images):,} test digits"}
        first = [int(np.argmax(labels == c)) for c in range(10) if np.any(labels == c)]
        pixels = np.round(np.clip(images[first], 0, 1) * 255).astype(np.uint8)
        data["examples"] = {"labels": labels[first].tolist(), "pixels": _b64(pixels)}
    fields = {"__CSP__": CSP, "__TITLE__": _html_escape(title), "__DATA__": _script_json(data)}
    page = TEMPLATE.read_text(encoding="utf-8")                 # one pass: a title "__DATA__" stays text
    return re.sub("|".join(FIELDS), lambda m: fields[m.group(0)], page)


def write_explorer(path, model, **kwargs):
    """Write ``explorer_html(model, **kwargs)`` to ``path``; return the number of bytes written.

    Written to a temporary file and renamed, so a failed write keeps an earlier page whole.
    """
    page, path = explorer_html(model, **kwargs).encode("utf-8"), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, lambda f: f.write(page))
    return len(page)


def check_explorable(model):
    """Raise ValueError (one line) if the page cannot show this model.

    The page computes vae.py's encoder, decoder and loss: a model whose ``encode`` or ``loss``
    is another (the autoencoder's, the conditional VAE's) is refused by what it computes."""
    if getattr(type(model), "encode", None) is not VAE.encode or getattr(type(model), "loss", None) is not VAE.loss:
        raise ValueError(f"it holds {model.article}; the explorer page shows a VAE's q(z|x) and "
                         f"negative ELBO only: draw from it with scratchvae sample")
    side = int(round(np.sqrt(model.input_dim)))
    if side * side != model.input_dim:
        raise ValueError(f"the model's {model.input_dim} pixels are not a square image")
    if model.latent_dim < 2:
        raise ValueError(f"the latent map needs at least 2 latent dimensions, the model has {model.latent_dim}")
    if model.activation not in JS_ACTIVATIONS:
        raise ValueError(f"the page computes the activations {', '.join(JS_ACTIVATIONS)}, "
                         f"not {model.activation!r}")
    if model.likelihood not in JS_LIKELIHOODS:
        raise ValueError(f"the page computes the likelihoods {', '.join(JS_LIKELIHOODS)}, "
                         f"not {model.likelihood!r}")


def map_range(mu):
    """Half-width R of the map's square [-R, R]^2: at least 3 (the prior's +-3 sigma), wide enough
    for 99% of the encoded digits in every shown dimension, rounded up to a half."""
    reach = float(np.quantile(np.abs(mu), 0.99)) if mu.size else 0.0
    return max(3.0, np.ceil(2 * reach) / 2)


def _layers(model):
    """model.params as {"enc.fc1": {"shape": [D_in, D_out], "W": base64, "b": base64}, ...}."""
    names = sorted({name.rsplit(".", 1)[0] for name in model.params})
    return {name: {"shape": list(model.params[f"{name}.W"].shape),
                   "W": _b64(model.params[f"{name}.W"].astype("<f4")),
                   "b": _b64(model.params[f"{name}.b"].astype("<f4"))} for name in names}


def _b64(array):
    """An array's bytes (float32 little-endian or uint8, C order) as base64 text."""
    array = np.ascontiguousarray(array, dtype="<f4" if np.issubdtype(array.dtype, np.floating) else np.uint8)
    return base64.b64encode(array.tobytes()).decode("ascii")


def _script_json(data):
    r"""JSON for a <script type="application/json"> block: every <, > and & as a JSON escape.

    Nothing in it can then end the block (</script>) or open a comment or a nested script
    (<!--, <script) that makes the HTML parser swallow the page's own script; JSON.parse reads
    \u003c back as <. (json.dumps also escapes every non-ASCII character.)
    """
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _html_escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
