"""What the pictures' colours mean. In the figures' PNGs the colour of a label in the legend is the
colour of its points, read back from the file's pixels, and a circle is drawn round (equal axes);
on the explorer's map every label's dots stand out from the grey digits behind them.

Each test draws codes whose points of one label pile up on one spot (so alpha blending saturates
to the label's own colour), beside image grids of random greys (which crowd any adaptive
palette), saves the PNG through ``plots._save`` and reads the pixels at the points' spots and at
the legend's markers. Positions come from the figure's own transforms at the saved dpi.
"""
import re

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from scratchvae.pictures import plots
from scratchvae.pictures.explore import TEMPLATE

D = 16
TAB10 = np.round(np.array(colormaps["tab10"].colors) * 255)           # (10, 3), 0..255


def drawn(monkeypatch):
    """The matplotlib Figures a plot function saves, after their PNG is written."""
    figures, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: save(fig, path, dpi) and figures.append(fig) or path)
    return figures


def spots(n_labels=10, per_label=60, radius=2.7):
    """Codes (n_labels * per_label, 2): every point of label k on one spot of a circle (off the
    grid lines, which are drawn over the points); labels; the spots (n_labels, 2)."""
    angle = 2 * np.pi * (np.arange(n_labels) + 0.3) / n_labels
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    labels = np.repeat(np.arange(n_labels), per_label)
    return centres[labels], labels, centres


def pixel(png, fig, xy_display):
    """The RGB (0..255) of the PNG pixel under a display point (origin bottom left)."""
    x, y = np.asarray(xy_display)
    height = png.shape[0]
    return png[int(height - y), int(x)].astype(float)


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def legend_marker_colours(png, fig, legend):
    """The RGB of the pixel at the centre of each marker in a legend."""
    out = []
    for handle in legend.legend_handles:
        centre = handle.get_transform().transform(np.mean(handle.get_xydata(), axis=0))
        out.append(pixel(png, fig, centre))
    return np.array(out)


def assert_colours(found, what):
    for k, colour in enumerate(found):
        assert np.abs(colour - TAB10[k]).max() <= 2, f"{what}: label {k} drawn {colour}, its colour is {TAB10[k]}"


def test_figure_10_legend_and_points_keep_the_ten_label_colours_and_the_circle_is_round(tmp_path, monkeypatch):
    figures = drawn(monkeypatch)
    rng = np.random.default_rng(0)
    codes, labels, centres = spots()
    path = plots.plot_autoencoder_vs_vae({"autoencoder": codes, "VAE": 0.5 * codes}, labels,
                                         {"autoencoder": rng.random((400, D)), "VAE": rng.random((400, D))},
                                         {}, tmp_path / "10.png")
    fig, png = figures[0], read_png(path)
    assert_colours(legend_marker_colours(png, fig, fig.legends[0]), "legend")
    for ax, scale in zip(fig.axes[0::2], (1.0, 0.5)):                # the two code panels
        assert_colours([pixel(png, fig, ax.transData.transform(scale * c)) for c in centres], ax.get_title())
        circle = ax.transData.transform(ax.get_lines()[0].get_xydata())  # the 95 % circle, in pixels
        width, height = np.ptp(circle, axis=0)
        assert width == pytest.approx(height, abs=1.0), (width, height)


def test_figure_11_legend_and_points_keep_the_ten_label_colours(tmp_path, monkeypatch):
    figures = drawn(monkeypatch)
    rng = np.random.default_rng(1)
    codes, labels, centres = spots()
    betas = [0.0, 1.0, 4.0]
    path = plots.plot_beta_sweep(betas, [20.0, 5.0, 3.0], [165.0, 166.0, 169.0], [codes] * 3, labels,
                                 [rng.random((400, D))] * 3, tmp_path / "11.png")
    fig, png = figures[0], read_png(path)
    assert_colours(legend_marker_colours(png, fig, fig.legends[0]), "legend")
    code_panels = [ax for ax in fig.axes if ax.get_title().startswith("β") and "test codes" in ax.get_title()]
    assert len(code_panels) == len(betas)
    for ax in code_panels:
        assert_colours([pixel(png, fig, ax.transData.transform(c)) for c in centres], ax.get_title())
        circle = ax.transData.transform(ax.get_lines()[0].get_xydata())
        width, height = np.ptp(circle, axis=0)
        assert width == pytest.approx(height, abs=1.0), (width, height)


def test_figure_4_legend_and_points_keep_the_ten_label_colours(tmp_path, monkeypatch):
    figures = drawn(monkeypatch)
    codes, labels, centres = spots()
    path = plots.plot_latent_space(codes, labels, tmp_path / "4.png")
    fig, png = figures[0], read_png(path)
    ax = fig.axes[0]
    assert_colours(legend_marker_colours(png, fig, ax.get_legend()), "legend")
    assert_colours([pixel(png, fig, ax.transData.transform(c)) for c in centres], "points")


def test_a_png_keeps_every_colour_exactly(tmp_path):
    rng = np.random.default_rng(2)
    for rgb in (rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),                     # many colours: RGB
                np.repeat(rng.integers(0, 256, (30, 40, 1), dtype=np.uint8), 3, axis=2)):   # greys: a palette
        plots._lossless(rgb).save(tmp_path / "x.png")
        np.testing.assert_array_equal(read_png(tmp_path / "x.png"), rgb)


def cielab(rgb):
    """sRGB (..., 3) in 0..255 -> CIE L*a*b* (D65): distances there are perceived differences."""
    c = np.asarray(rgb, float) / 255
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)             # linear light
    xyz = c @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def test_every_labels_dots_stand_out_from_the_grey_digits_of_the_explorers_map():
    """A dot (its colour at the page's alpha over any grey of the backdrop) is at least 15 CIELAB
    units from every grey the backdrop's faint digits use: clearly another colour, not one more
    shade of the mosaic (2.3 is a just noticeable difference; tab10's grey 7 was at 4.9)."""
    page = TEMPLATE.read_text(encoding="utf-8")
    colours = re.search(r"const COLORS = \[([^\]]*)\]", page).group(1)
    colours = [[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in re.findall(r'"#([0-9a-fA-F]{6})"', colours)]
    ink = int(re.search(r"const v = 255 - Math.round\((\d+) \* Math.min\(1, Math.max\(0, x\[d\]\)\)\);\s*// faint",
                        page).group(1))
    alpha = float(re.search(r"ctx.globalAlpha = (0\.\d+);", page).group(1))
    assert len(colours) == 10 and 0 < ink < 255 and 0 < alpha <= 1
    greys = np.arange(255 - ink, 256)[:, None].repeat(3, axis=1)                       # the backdrop's
    for label, colour in enumerate(colours):
        dot = alpha * np.asarray(colour, float) + (1 - alpha) * greys                  # over each grey
        distance = np.linalg.norm(cielab(dot)[:, None] - cielab(greys)[None], axis=-1).min()
        assert distance >= 15, f"label {label}'s dots ({colour}) are {distance:.1f} from the map's greys"
