"""The explorer page: the browser computes what NumPy computes, the page reacts, it fetches nothing.

Browser tests run Debian's ``chromium-headless-shell`` (``.ci/run`` installs it; set
$SCRATCHVAE_CHROMIUM to use another binary) and skip with the reason when it is missing.
Each one writes the page, appends a small inline script that calls ``window.scratchvae`` or
dispatches pointer events and writes its findings as JSON into ``<pre id="result">``, and
reads it back from ``--dump-dom``. The page's Content-Security-Policy runs only scripts named
by their hash, so the appended script's hash is added to it, as explore.py adds the page's own;
the rest of the policy is the page's, so these tests also show that the page works under it.
Chromium runs with every host name unresolvable except 127.0.0.1 (the network is off for it).
"""
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np
import pytest
from matplotlib.image import imread

from scratchvae import VAE, Adam
from scratchvae.machinery.cli import main
from scratchvae.machinery.data import FILES
from scratchvae.pictures.explore import (CSP, TEMPLATE, _sha256, content_security_policy, explorer_html, map_range,
                                        write_explorer)
from helpers import write_idx                    # a gzip IDX file of uint8 images or labels

WINDOW = (1280, 980)


# ---------------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------------

def chromium():
    """The headless browser's path, or skip the test saying how to get one."""
    for name in (os.environ.get("SCRATCHVAE_CHROMIUM"), "chromium-headless-shell", "chromium"):
        path = name and shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium found (apt-get install -y chromium-headless-shell, or set "
                "$SCRATCHVAE_CHROMIUM): the browser tests need one")


def run_browser(page_path, *, screenshot=None, wait_ms=None, fragment=""):
    """Open the file in headless Chromium; return the DOM after the scripts ran (or write a PNG)."""
    with tempfile.TemporaryDirectory() as profile:
        args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--user-data-dir=" + profile, "--force-device-scale-factor=1",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",     # no network but loopback
                f"--window-size={WINDOW[0]},{WINDOW[1]}"]
        if wait_ms:
            args.append(f"--virtual-time-budget={wait_ms}")
        args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        uri = page_path.resolve().as_uri() + (f"#{fragment}" if fragment else "")
        done = subprocess.run(args + [uri], capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def with_script(page, script):
    """The page with one more inline script at the end of <body> (in a function of its own, so
    its names do not clash with the page's), its hash added to the page's script-src; it may
    call report(obj)."""
    report = ("function report(obj) { const pre = document.createElement('pre'); pre.id = 'result';"
              " pre.textContent = JSON.stringify(obj); document.body.append(pre); }\n")
    code = f"\n(() => {{\n{report}{script}\n}})();\n"
    page = page.replace("script-src ", f"script-src {_sha256(code)} ", 1)
    return page.replace("</body>", f"<script>{code}</script>\n</body>")


def result(dom):
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found, "the test script wrote no result (did the page's script fail?)\n" + dom[-3000:]
    return json.loads(html.unescape(found.group(1)))


def in_browser(tmp_path, page, script, **kwargs):
    """Run ``script`` in the page; return what it reported."""
    path = tmp_path / "test.html"
    path.write_text(with_script(page, script), encoding="utf-8")
    return result(run_browser(path, **kwargs))


# ---------------------------------------------------------------------------------------------
# Models: small, a few Adam steps from random initialisation (equality is the point)
# ---------------------------------------------------------------------------------------------

def digits(n, seed=0):
    """n 28 x 28 'digits' in [0, 1], float32-exact: a bar per label and some speckle; and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), np.float32)
    for i, label in enumerate(labels):
        images[i, 4 + 2 * label:6 + 2 * label, 4:24] = 1.0
    images = np.maximum(images, (rng.random(images.shape) < 0.05) * rng.random(images.shape))
    return images.reshape(n, 784).astype(np.float32), labels


def trained(latent, hidden=(32,), activation="relu", likelihood="bernoulli", steps=20):
    model = VAE(784, list(hidden), latent, activation=activation, likelihood=likelihood, seed=latent)
    x, _ = digits(64)
    optimizer = Adam(model.flat_params, model.flat_grads, lr=3e-3)
    for _ in range(steps):
        model.loss_and_grads(x)
        optimizer.step()
    return model


def float64_copy(model):
    twin = VAE(**{**model.config(), "dtype": np.float64})
    for name, value in model.params.items():
        twin.params[name][...] = value
    return twin


ARCHITECTURES = [
    dict(latent=2),                                                   # the demo's shape, smaller
    dict(latent=20),                                                  # the main model's latent size
    dict(latent=3, hidden=(24, 16), activation="tanh", likelihood="gaussian"),
    dict(latent=2, hidden=(16,), activation="softplus"),
    dict(latent=5, hidden=(16, 12), activation="sigmoid"),
]


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: "-".join(str(v) for v in a.values()))
def test_decode_encode_and_loss_in_the_browser_equal_numpy(arch, tmp_path):
    model = trained(**arch)
    K, rng = model.latent_dim, np.random.default_rng(1)
    z = rng.standard_normal((24, K)).astype(np.float32) * 1.5        # float32 values: both sides see the same z
    x, labels = digits(5, seed=2)
    eps = rng.standard_normal((5, 3, K)).astype(np.float32)          # 3 samples of eps per digit
    page = explorer_html(model, images=digits(200)[0], labels=digits(200)[1])
    script = (f"const Z = {json.dumps(z.tolist())}, X = {json.dumps(x.tolist())}, E = {json.dumps(eps.tolist())};\n"
              "const S = window.scratchvae;\n"
              "report({decode: Z.map(S.decode), encode: X.map(S.encode),"
              " loss_mu: X.map(x => S.loss(x)), loss_eps: X.map((x, i) => S.loss(x, E[i]))});")
    got = in_browser(tmp_path, page, script)

    mu, logvar = model.encode(x)
    # what VAE.decode_mean and VAE.encode return (float32), to 1e-5
    np.testing.assert_allclose(got["decode"], model.decode_mean(z), rtol=0, atol=1e-5)
    np.testing.assert_allclose([e["mu"] for e in got["encode"]], mu, rtol=0, atol=1e-5)
    np.testing.assert_allclose([e["logvar"] for e in got["encode"]], logvar, rtol=0, atol=1e-5)
    # the page computes in float64 from the float32 weights: it equals the float64 model closely
    twin = float64_copy(model)
    np.testing.assert_allclose(got["decode"], twin.decode_mean(z), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose([e["mu"] for e in got["encode"]], twin.encode(x)[0], rtol=1e-10, atol=1e-12)
    # the loss for one digit, at z = mu and with given eps, is VAE.loss's (the float64 twin's)
    for i in range(len(x)):
        _, at_mu = twin.loss(x[i:i + 1], np.zeros((1, 1, K)))
        _, with_eps = twin.loss(x[i:i + 1], eps[i][:, None, :])
        for key in ("rec", "kl", "nelbo"):
            assert got["loss_mu"][i][key] == pytest.approx(at_mu[key], rel=1e-10, abs=1e-10), key
            assert got["loss_eps"][i][key] == pytest.approx(with_eps[key], rel=1e-10, abs=1e-10), key
    assert got["loss_mu"][0]["rec"] != pytest.approx(got["loss_eps"][0]["rec"], rel=1e-6)   # eps mattered


# ---------------------------------------------------------------------------------------------
# Pointer events: the map decodes, the drawing moves q(z|x)'s ellipse
# ---------------------------------------------------------------------------------------------

EVENTS = r"""
function fire(el, type, fx, fy, buttons) {
  const r = el.getBoundingClientRect();
  el.dispatchEvent(new PointerEvent(type, {bubbles: true, pointerId: 7, isPrimary: true, buttons: buttons,
    clientX: r.left + fx * r.width, clientY: r.top + fy * r.height}));
}
function pixels(id) { return Array.from(document.getElementById(id).getContext('2d').getImageData(0, 0, 28, 28).data); }
function look() {
  const map = document.getElementById('map');
  return {decoded: pixels('decoded'), recon: pixels('recon'), drawn: pixels('draw'), z: JSON.parse(map.dataset.z),
          ellipse: map.dataset.ellipse ? JSON.parse(map.dataset.ellipse) : null,
          ink: Array.from(window.scratchvae.state.ink), axes: [window.scratchvae.state.a, window.scratchvae.state.b], nelbo: document.getElementById('loss').dataset.nelbo || null};
}
function strokeOn(id, points) {
  const c = document.getElementById(id);
  fire(c, 'pointerdown', points[0][0], points[0][1], 1);
  for (const [fx, fy] of points.slice(1)) fire(c, 'pointermove', fx, fy, 1);
  fire(c, 'pointerup', points[points.length - 1][0], points[points.length - 1][1], 0);
}
const rects = {};
for (const id of ['map', 'decoded', 'draw', 'recon']) {
  const r = document.getElementById(id).getBoundingClientRect();
  rects[id] = [r.left, r.top, r.width, r.height];
}
const seen = {start: look()};
fire(document.getElementById('map'), 'pointermove', 0.85, 0.2, 0);             // hover: upper right
seen.map1 = look();
fire(document.getElementById('map'), 'pointermove', 0.15, 0.8, 0);             // lower left
seen.map2 = look();
const line = []; for (let i = 0; i <= 20; i++) line.push([0.5, 0.15 + 0.7 * i / 20]);  // a "1"
strokeOn('draw', line);
seen.draw1 = look();
const bar = []; for (let i = 0; i <= 20; i++) bar.push([0.15 + 0.7 * i / 20, 0.3]);  // and a bar across
strokeOn('draw', bar);
seen.draw2 = look();
"""


def _grey(rgba):
    """Canvas RGBA bytes (28*28*4,) -> ink in [0, 1] as the page paints it (255 = paper)."""
    return 1 - np.asarray(rgba, dtype=float).reshape(-1, 4)[:, 0] / 255


@pytest.mark.parametrize("latent", [2, 20])
def test_pointer_events_decode_on_the_map_and_draw_the_ellipse(latent, tmp_path):
    model = trained(latent)
    images, labels = digits(300)
    got = in_browser(tmp_path, explorer_html(model, images=images, labels=labels), EVENTS + "report(seen);")
    start, map1, map2, draw1, draw2 = (got[k] for k in ("start", "map1", "map2", "draw1", "draw2"))
    mu_test = model.encode(images)[0][:, :12]
    R, axes = map_range(mu_test), start["axes"]
    assert axes == sorted(np.argsort(-mu_test.var(axis=0))[:2].tolist())   # the two most spread dimensions

    # hovering the map moves z and changes the decoded image: it is the decoder's mean at that z
    assert start["z"] == [0, 0] and start["ellipse"] is None and start["nelbo"] is None
    assert map1["z"][0] > 0.5 * R and map1["z"][1] > 0.5 * R
    assert map2["z"][0] < -0.5 * R and map2["z"][1] < -0.5 * R
    for seen in (start, map1, map2):
        z = np.zeros((1, latent), np.float32)
        z[0, axes] = seen["z"]
        np.testing.assert_allclose(_grey(seen["decoded"]), model.decode_mean(z)[0], atol=0.5 / 255 + 1e-5)
    assert np.abs(_grey(map1["decoded"]) - _grey(map2["decoded"])).max() > 0.1

    # drawing puts ink on the canvas, encodes it: the ellipse is q(z|x) of the ink, the
    # reconstruction its decoded mean, the loss appears; a second stroke moves them
    assert start["drawn"] == [255, 255, 255, 255] * 784
    for before, after in ((map2, draw1), (draw1, draw2)):
        ink = np.asarray(after["ink"], np.float32)
        assert ink.sum() > np.asarray(before["ink"]).sum() + 5
        assert after["ellipse"] is not None and after["ellipse"] != before["ellipse"]
        mu, logvar = model.encode(ink[None])
        np.testing.assert_allclose(after["ellipse"]["mu"], mu[0, axes], atol=1e-5)
        np.testing.assert_allclose(after["ellipse"]["sigma"], np.exp(0.5 * logvar[0, axes]), atol=1e-5)
        np.testing.assert_allclose(_grey(after["recon"]), model.reconstruct(ink[None])[0], atol=0.5 / 255 + 1e-5)
        np.testing.assert_allclose(_grey(after["drawn"]), ink, atol=0.5 / 255 + 1e-6)
        assert after["nelbo"] is not None
        _, parts = float64_copy(model).loss(ink[None], np.zeros((1, 1, latent)))
        assert float(after["nelbo"]) == pytest.approx(parts["nelbo"], rel=1e-6)
    assert np.asarray(draw2["ink"]).sum() > np.asarray(draw1["ink"]).sum() + 5
    assert draw2["decoded"] == map2["decoded"]                       # drawing leaves the pointer's z alone


def test_a_screenshot_after_pointer_events_is_neither_blank_nor_unchanged(tmp_path):
    model = trained(2)
    images, labels = digits(300)
    page = explorer_html(model, images=images, labels=labels)
    plain, events = tmp_path / "plain.html", tmp_path / "events.html"
    plain.write_text(page, encoding="utf-8")
    events.write_text(with_script(page, EVENTS + "report(rects);"), encoding="utf-8")
    rects = result(run_browser(events))
    shots = {}
    for name, path in (("plain", plain), ("events", events)):
        run_browser(path, screenshot=tmp_path / f"{name}.png", wait_ms=2000)
        shots[name] = imread(tmp_path / f"{name}.png")[..., :3]
    assert shots["plain"].shape == shots["events"].shape == (WINDOW[1], WINDOW[0], 3)

    def region(shot, name):
        left, top, width, height = (int(round(v)) for v in rects[name])
        return shot[top + 2:top + height - 2, left + 2:left + width - 2]

    for name, shot in shots.items():                             # not blank: a spread, the dots, a digit
        assert shot.std() > 0.05, name
        dots = region(shot, "map")
        assert (dots.max(axis=2) - dots.min(axis=2) > 0.3).mean() > 0.001, name   # coloured pixels
        assert region(shot, "decoded").std() > 0.02, name
    for name in ("map", "decoded", "draw", "recon"):             # each part changed with the events
        before, after = region(shots["plain"], name), region(shots["events"], name)
        assert np.abs(before - after).max() > 0.3, name
    drawn = region(shots["events"], "draw")
    assert (drawn.min(axis=2) < 0.5).mean() > 0.02                 # the stroke shows on the canvas
    assert (region(shots["plain"], "draw") > 0.99).all()          # which was empty before
    red = region(shots["events"], "map")
    assert ((red[..., 0] > 0.6) & (red[..., 1] < 0.25) & (red[..., 2] < 0.25)).sum() > 50  # the ellipse


def test_sliders_axes_and_the_sample_toggle_for_more_than_two_dimensions(tmp_path):
    model = trained(20)
    script = r"""
const S = window.scratchvae, out = {sliders: document.querySelectorAll('#sliders input[type=range]').length};
function pixels() { return Array.from(document.getElementById('decoded').getContext('2d').getImageData(0, 0, 28, 28).data); }
const s5 = document.getElementById('s5'); s5.value = 2.5; s5.dispatchEvent(new Event('input'));
out.z = S.state.z.slice(); out.afterSlider = pixels();
const ax = document.getElementById('axis-a'); ax.value = '7'; ax.dispatchEvent(new Event('change'));
const map = document.getElementById('map'), r = map.getBoundingClientRect();
map.dispatchEvent(new PointerEvent('pointermove', {bubbles: true, clientX: r.left + 0.9 * r.width, clientY: r.top + r.height / 2}));
out.zMap = S.state.z.slice();
const toggle = document.getElementById('sample'); toggle.checked = true; toggle.dispatchEvent(new Event('change'));
out.sample = pixels();
out.shownSliderValue = Number(document.getElementById('s7').value);
report(out);"""
    got = in_browser(tmp_path, explorer_html(model), script)
    assert got["sliders"] == 12                                      # the first dozen of 20
    z = np.zeros((1, 20), np.float32)
    z[0, 5] = 2.5
    assert got["z"] == z[0].tolist()
    np.testing.assert_allclose(_grey(got["afterSlider"]), model.decode_mean(z)[0], atol=0.5 / 255 + 1e-5)
    assert got["zMap"][7] > 2 and got["zMap"][5] == 2.5 and got["zMap"][1] == 0   # across: z7, up: z1
    assert got["shownSliderValue"] == pytest.approx(got["zMap"][7], abs=0.01)
    assert set(np.unique(_grey(got["sample"]))) <= {0.0, 1.0}       # a Bernoulli draw: 0 or 1 per pixel


def test_a_link_opens_the_page_on_a_test_digit_and_a_given_z(tmp_path):
    model = trained(3)
    images, labels = digits(100)
    script = "report({z: window.scratchvae.state.z, ink: Array.from(window.scratchvae.state.ink)});"
    got = result(run_browser(_page(tmp_path, explorer_html(model, images=images, labels=labels), script),
                             fragment="example=3&z=1.5,-0.5"))
    assert got["z"] == [1.5, -0.5, 0]
    np.testing.assert_allclose(got["ink"], np.round(images[np.argmax(labels == 3)] * 255) / 255, atol=1e-12)


def _page(tmp_path, page, script):
    path = tmp_path / "test.html"
    path.write_text(with_script(page, script), encoding="utf-8")
    return path


def test_the_decode_takes_well_under_a_frame(tmp_path):
    page = tmp_path / "page.html"
    write_explorer(page, trained(2, hidden=(400,), steps=1))        # the demo's size, 784-400-2
    found = re.search(r'data-ms-per-decode="([0-9.e-]+)"', run_browser(page))
    assert found, "the page measured no decode time"
    assert 0 < float(found.group(1)) < 16                             # a frame at 60 Hz


# ---------------------------------------------------------------------------------------------
# Offline: the CSP forbids every request, and the page makes none
# ---------------------------------------------------------------------------------------------

def test_the_csp_meta_tag_forbids_every_request():
    page = explorer_html(trained(2, steps=1), images=digits(50)[0], labels=digits(50)[1])
    tags = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert tags == [CSP]
    assert page.index("Content-Security-Policy") < min(page.index("<script"), page.index("<style"))
    directives = dict((d.split()[0], d.split()[1:]) for d in CSP.split(";"))
    assert directives.pop("default-src") == ["'none'"]
    # the page's one script and one style sheet, by the SHA-256 of their text (no 'unsafe-inline')
    script, = re.findall(r"<script>(.*?)</script>", page, re.S)
    style, = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert directives.pop("script-src") == [_sha256(script)] and directives.pop("style-src") == [_sha256(style)]
    assert not re.search(r"\sstyle\s*=|\son[a-z]+\s*=", page, re.I)        # no style or handler attributes
    template = TEMPLATE.read_text(encoding="utf-8")
    assert content_security_policy(template) == CSP
    for changed in (template.replace("\n", "\r\n"),          # the parser reads CR LF as LF: another hash
                    template.replace("</body>", "<script>x()</script></body>"),
                    template.replace("const DATA", "__DATA__; const DATA")):
        with pytest.raises(ValueError, match="one <script> and one <style>, fixed text"):
            content_security_policy(changed)
    assert directives.pop("base-uri") == ["'none'"] and directives.pop("form-action") == ["'none'"]
    assert directives == {}                                         # nothing else allowed
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*[a-z]+:""", page, re.I)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.I)


class _Counter(http.server.BaseHTTPRequestHandler):
    hits = []

    def do_GET(self):
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


TRY_THE_NETWORK = r"""
const url = 'http://127.0.0.1:PORT/';
let violations = 0, tried = 0;
document.addEventListener('securitypolicyviolation', () => { violations++; });
const attempt = f => { tried++; try { f(); } catch (_) {} };
attempt(() => fetch(url + 'fetch').catch(() => {}));
attempt(() => { const x = new XMLHttpRequest(); x.open('GET', url + 'xhr'); x.onerror = () => {}; x.send(); });
attempt(() => { const i = new Image(); i.src = url + 'img'; document.body.append(i); });
attempt(() => { const l = document.createElement('link'); l.rel = 'stylesheet'; l.href = url + 'css'; document.head.append(l); });
attempt(() => { const f = document.createElement('iframe'); f.src = url + 'frame'; document.body.append(f); });
attempt(() => { new EventSource(url + 'events'); });
attempt(() => { const d = document.createElement('div'); d.style.backgroundImage = `url(${url}bg)`; document.body.append(d); });
attempt(() => { new FontFace('x', `url(${url}font)`).load().catch(() => {}); });
setTimeout(() => report({violations, tried, decode: window.scratchvae.decode([0, 0]).length}), 1500);
"""


@pytest.mark.parametrize("with_csp", [True, False], ids=["page", "page-without-its-csp"])
def test_no_request_leaves_the_page(with_csp, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    _Counter.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = explorer_html(trained(2, steps=1), images=digits(50)[0], labels=digits(50)[1])
        if not with_csp:                   # the same page without its CSP: the same attempts get out
            page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
        script = TRY_THE_NETWORK.replace("PORT", str(server.server_address[1]))
        got = in_browser(tmp_path, page, script, wait_ms=5000)
    finally:
        server.shutdown()
        server.server_close()
    assert got["decode"] == 784 and got["tried"] == 8
    if with_csp:
        assert _Counter.hits == []
        assert got["violations"] >= 7                              # every attempt was refused by the CSP
    else:
        assert len(_Counter.hits) >= 5 and got["violations"] == 0  # the test can see a request


# ---------------------------------------------------------------------------------------------
# Hostile text: the title (a checkpoint's path), the data's source and the label names are
# text on the page, never markup or script; and the CSP runs no inline script but the page's
# ---------------------------------------------------------------------------------------------

RAN = "(window.ran = window.ran || []).push"            # what any injected code would do first
HOSTILE = ["<!--<script>", f"</script><script>{RAN}('script')</script>", "</SCRIPT ><!--",
           f'<svg onload="{RAN}(\'svg\')"><b id="injected">bold</b>', "]]>--><!-- <script>",
           f"</title><script>{RAN}('title')</script>", "__DATA__ __TITLE__ __CSP__",
           "<\\/script>\u2028\u2029&amp;&lt;\"'`${1}", f"<img src=x onerror=\"{RAN}('img')\">", "<!--"]
TITLE, SOURCE = "".join(HOSTILE), " ".join(reversed(HOSTILE))
# what an attacker could write into the HTML itself, past the data: the CSP must stop it
INJECTED = (f"<script>{RAN}('inline')</script><img src=\"#\" onerror=\"{RAN}('handler')\">"
            '<p id="styled" style="color: rgb(1, 2, 3)">styled?</p>')

LOOK = r"""
const data = JSON.parse(document.getElementById('scratchvae-data').textContent);
const css = (id, p) => getComputedStyle(document.getElementById(id))[p];
window.addEventListener('load', () => setTimeout(() => report({ran: window.ran || [], injected: document.getElementById('injected') !== null,
        scripts: document.scripts.length, title: data.title, source: data.points.source,
        names: data.label_names, head_title: document.querySelector('title').textContent,
        about: document.getElementById('about').textContent,
        note: document.getElementById('map-note').textContent,
        legend: document.getElementById('legend').textContent,
        decode: window.scratchvae.decode([0, 0]).length,
        body: css('about', 'color'), footer: css('footer', 'maxWidth'),
        dot: getComputedStyle(document.querySelector('#legend i')).backgroundColor,
        styled: document.getElementById('styled') && css('styled', 'color')}), 200));
"""


@pytest.mark.parametrize("with_csp", [True, False], ids=["page", "page-without-its-csp"])
def test_hostile_titles_sources_and_label_names_stay_text_and_run_nothing(with_csp, tmp_path):
    """A path holding <!--<script> made a dead page (the data block swallowed the main script),
    and with the replace("</", ...) gone an injected title ran. Now the page works, shows every
    string as it is, and runs nothing but its own script: without its CSP too (the escaping alone
    keeps the data inert), where the code injected into the HTML itself does run -- which the
    page's CSP stops (hash-only script-src and style-src: no inline script, handler or style)."""
    images, labels = digits(60)
    page = explorer_html(trained(2, steps=1), images=images, labels=labels, title=TITLE, source=SOURCE,
                         label_names=HOSTILE)
    page = page.replace("</body>", INJECTED + "</body>")
    if not with_csp:
        page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    got = in_browser(tmp_path, page, LOOK, wait_ms=3000)
    assert got["ran"] == ([] if with_csp else ["inline", "handler"]), got["ran"]   # nothing from the data
    assert not got["injected"] and got["scripts"] == 4          # the data, the page's, the injected, this test's
    assert (got["title"], got["source"], got["names"]) == (TITLE, SOURCE, HOSTILE)
    assert got["head_title"] == TITLE and got["about"].startswith(TITLE + ": a VAE 784-32-2")
    assert SOURCE in got["note"] and all(HOSTILE[k] in got["legend"] for k in set(labels.tolist()))
    assert got["decode"] == 784                                 # the page works
    assert got["body"] == "rgb(85, 85, 85)" and got["footer"] == "none"     # its style sheet applies
    assert got["dot"] != "rgba(0, 0, 0, 0)"                     # the legend's colours, set through the CSSOM
    assert (got["styled"] != "rgb(1, 2, 3)") == with_csp        # an injected style attribute: refused


def test_the_embedded_data_holds_no_angle_bracket_and_reads_back_exactly():
    page = explorer_html(trained(2, steps=1), title=TITLE, source=SOURCE, label_names=HOSTILE)
    block = re.search(r'<script type="application/json" id="scratchvae-data">(.*?)</script>', page, re.S).group(1)
    assert not set("<>&") & set(block)                           # every one written \u003c, \u003e, \u0026
    assert json.loads(block)["title"] == TITLE and json.loads(block)["label_names"] == HOSTILE
    assert page.count("<script") == 2 and page.count("</script>") == 2
    with pytest.raises(ValueError, match="label_names must be ten strings"):
        explorer_html(trained(2, steps=1), label_names=["<b>"] * 9)


# ---------------------------------------------------------------------------------------------
# The command: scratchvae explore
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run (checkpoint) on a synthetic data set written as IDX files."""
    data = tmp_path_factory.mktemp("data")
    for split, n in (("train", 96), ("test", 40)):
        images, labels = digits(n, seed=len(split))
        images_file, labels_file = FILES[split]
        write_idx(data / f"{images_file}.gz", np.round(images * 255).reshape(n, 28, 28))
        write_idx(data / f"{labels_file}.gz", labels)
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data-dir", str(data), "--no-download", "--hidden", "16", "--latent", "2",
                 "--batch-size", "32", "--epochs", "1", "--out", str(out)]) == 0
    return out / "checkpoint.npz", data


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scratchvae explore: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def embedded(page):
    return json.loads(re.search(r'<script type="application/json" id="scratchvae-data">(.*?)</script>',
                                page, re.S).group(1))


def test_explore_writes_one_page_with_the_runs_test_digits(run, tmp_path, capsys):
    checkpoint, _ = run
    out = tmp_path / "sub" / "explorer.html"
    assert main(["explore", str(checkpoint), "--out", str(out), "--points", "25"]) == 0
    assert re.match(rf"wrote {re.escape(str(out))}: 0\.\d MB, 25 test digits \(mnist test\) on the map",
                    capsys.readouterr().out)
    data = embedded(out.read_text(encoding="utf-8"))
    assert data["model"] == {"input_dim": 784, "hidden_dims": [16], "latent_dim": 2,
                             "activation": "relu", "likelihood": "bernoulli"}
    assert len(data["points"]["labels"]) == 36                     # 25 bytes in base64
    assert sorted(data["params"]) == ["dec.fc1", "dec.logits", "enc.fc1", "enc.logvar", "enc.mu"]


def test_a_checkpoint_path_holding_markup_gives_a_working_page_that_runs_nothing_else(run, tmp_path, capsys):
    """The page's title is the checkpoint's path, which may hold any text."""
    import shutil
    checkpoint, _ = run
    hostile = tmp_path / "<!--<script>" / "a<" / f"script><script>{RAN}('path')<" / "script>" / "checkpoint.npz"
    hostile.parent.mkdir(parents=True)
    shutil.copy(checkpoint, hostile)
    assert "</script><script>" in str(hostile)
    out = tmp_path / "explorer.html"
    assert main(["explore", str(hostile), "--out", str(out), "--points", "25"]) == 0
    capsys.readouterr()
    got = in_browser(tmp_path, out.read_text(encoding="utf-8"), LOOK, wait_ms=3000)
    assert got["ran"] == [] and not got["injected"] and got["scripts"] == 3
    assert got["title"] == got["head_title"] == str(hostile) and got["about"].startswith(str(hostile) + ": a VAE")
    assert got["decode"] == 784 and got["source"] == "mnist test"


def test_explore_without_data_writes_the_page_without_the_scatter(run, tmp_path, capsys, monkeypatch):
    checkpoint, _ = run
    monkeypatch.setattr("scratchvae.machinery.cli.load", _no_data)            # the run's data is gone
    out = tmp_path / "explorer.html"
    assert main(["explore", str(checkpoint), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "no test digits for the map" in captured.err and "no test digits on the map" in captured.out
    assert embedded(out.read_text(encoding="utf-8"))["points"] is None
    assert main(["explore", str(checkpoint), "--out", str(out), "--points", "0"]) == 0


def _no_data(*args, **kwargs):
    from scratchvae.machinery.data import DataError
    raise DataError("mnist not found (test)")


def test_the_page_without_test_digits_works_and_says_so(tmp_path):
    page = explorer_html(trained(2, steps=1))
    got = in_browser(tmp_path, page, EVENTS + "report({note: document.getElementById('map-note').textContent,"
                     " legend: document.getElementById('legend').textContent, ellipse: seen.draw2.ellipse,"
                     " moved: seen.map1.z});")
    assert got["note"].startswith("No test digits were given") and got["legend"] == ""
    assert got["ellipse"] is not None and got["moved"] != [0, 0]


@pytest.mark.parametrize("make, expect", [
    (lambda p: p.write_bytes(b"not a checkpoint"), "not a readable .npz checkpoint"),
    (lambda p: None, "no such checkpoint file"),
])
def test_a_bad_checkpoint_is_one_line_and_exit_2(make, expect, tmp_path, capsys):
    bad = tmp_path / "checkpoint.npz"
    make(bad)
    assert main(["explore", str(bad), "--out", str(tmp_path / "e.html")]) == 2
    assert expect in one_error_line(capsys)


def test_an_unwritable_out_is_one_line_and_exit_2(run, tmp_path, capsys):
    checkpoint, _ = run
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["explore", str(checkpoint), "--out", str(blocker / "explorer.html"), "--points", "0"]) == 2
    assert "cannot write" in one_error_line(capsys)
    with pytest.raises(SystemExit) as exit_:
        main(["explore", str(checkpoint), "--out", str(tmp_path / "explorer.png")])
    assert exit_.value.code == 2
    assert ".html" in one_error_line(capsys)


def test_named_data_that_is_missing_is_an_error(run, tmp_path, capsys):
    checkpoint, _ = run
    assert main(["explore", str(checkpoint), "--data-dir", str(tmp_path / "nowhere"), "--no-download",
                 "--out", str(tmp_path / "e.html")]) == 2
    one_error_line(capsys)


def test_models_the_page_cannot_show_are_refused():
    with pytest.raises(ValueError, match="at least 2 latent dimensions"):
        explorer_html(VAE(784, [8], 1))
    with pytest.raises(ValueError, match="not a square image"):
        explorer_html(VAE(780, [8], 2))
    with pytest.raises(ValueError, match="need their labels"):
        explorer_html(VAE(784, [8], 2), images=digits(3)[0])


def test_write_explorer_keeps_an_earlier_page_whole_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "explorer.html"
    write_explorer(path, VAE(16, [4], 2, seed=0))            # 4 x 4 "images"
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("os.fsync", full_disk)              # the new page cannot reach the disk
    with pytest.raises(OSError, match="No space left"):
        write_explorer(path, VAE(16, [4], 2, seed=1))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["explorer.html"]
