"""Loudness envelopes for the studio's "follow a loudness envelope" section: a drawn envelope read as a loudness
curve, and the plot of the envelope a result produced over the one it was asked to follow.

A drawing is a fixed-size canvas (SKETCH_WIDTH x SKETCH_HEIGHT pixels) spanning the clip from left to right; a
stroke's height is its level: the canvas's top edge is TOP_DB, its bottom edge BOTTOM_DB, linearly in between. Each
column's level is the height of the stroke's centre in that column (the pixels' mean row, weighted by how opaque
or dark each is), so a horizontal line whose centre lies halfway down reads (TOP_DB + BOTTOM_DB) / 2. Columns the
stroke does not cross are interpolated between the drawn ones; before the first drawn column and after the last
the music is free (the curve starts and ends there)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .controls import Control
from .errors import OptionError

SKETCH_WIDTH, SKETCH_HEIGHT = 600, 180  # the canvas (pixels)
TOP_DB, BOTTOM_DB = 0.0, -60.0          # the levels of the canvas's top and bottom edges
MAX_POINTS = 64                         # a drawn curve keeps at most this many points (enough for a hand's stroke)


def stroke_weights(image) -> np.ndarray:
    """(H, W) how much of a stroke each pixel holds, 0..1, for a drawing (H, W) grey, (H, W, 3) RGB or (H, W, 4)
    RGBA, as uint8 or floats in 0..1: the alpha of a layer with a transparent background, else the darkness of a
    stroke on a light background."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise OptionError("a drawing must be an image (height x width, grey, RGB or RGBA)")
    full = 255.0 if image.dtype == np.uint8 else 1.0
    pixels = image.astype(np.float64) / full
    if pixels.ndim == 3 and pixels.shape[-1] == 4 and pixels[..., 3].min() < 1:
        return pixels[..., 3]  # a layer: the stroke is what is not transparent
    grey = pixels if pixels.ndim == 2 else pixels[..., :3].mean(-1)
    return 1.0 - grey  # a composite on a light background: the stroke is what is dark


def sketch_levels(image, top_db: float = TOP_DB, bottom_db: float = BOTTOM_DB) -> np.ndarray:
    """(W,) level in dB per column of a drawing (module docstring); NaN where no stroke crosses the column."""
    weights = stroke_weights(image)
    weights = np.where(weights > 0.05, weights, 0.0)  # antialiasing haze and paper noise are not the stroke
    height = weights.shape[0]
    mass = weights.sum(0)
    centre = (weights * (np.arange(height)[:, None] + 0.5)).sum(0) / np.maximum(mass, 1e-12)  # rows, top = 0
    levels = top_db + centre / height * (bottom_db - top_db)
    return np.where(mass >= 0.5, levels, np.nan)  # at least half a pixel of ink makes a column drawn


def sketch_curve(image, seconds: float, *, top_db: float = TOP_DB, bottom_db: float = BOTTOM_DB,
                 max_points: int = MAX_POINTS) -> str:
    """A loudness curve (`time_s:dB` text, vampnet.controls) from a drawing spanning `seconds` of the clip: each
    drawn column's level at its centre time, at most `max_points` of them, evenly spread over the drawn columns."""
    if seconds <= 0:
        raise OptionError("upload the clip first: the drawing spans its length")
    levels = sketch_levels(image, top_db, bottom_db)
    drawn = np.flatnonzero(~np.isnan(levels))
    if drawn.size == 0:
        raise OptionError("draw the loudness envelope on the canvas first (top: loud, bottom: quiet)")
    keep = drawn[np.unique(np.round(np.linspace(0, drawn.size - 1, min(max_points, drawn.size))).astype(int))]
    times = (keep + 0.5) / levels.size * seconds
    return ", ".join(f"{t:.3f}:{db:.1f}" for t, db in zip(times, levels[keep]))


def editor_image(value):
    """The drawing in a gradio ImageEditor/Sketchpad value (a dict of background, layers and composite, or an
    image): the strokes' layer where there is one (its transparent background isolates the strokes), else the
    composite."""
    if isinstance(value, dict):
        layers = [layer for layer in value.get("layers") or [] if layer is not None]
        if layers:
            return np.max(np.stack([np.asarray(layer) for layer in layers]), axis=0)
        value = value.get("composite")
    if value is None:
        raise OptionError("draw the loudness envelope on the canvas first (top: loud, bottom: quiet)")
    return np.asarray(value)


def plot_envelopes(requested: Control, produced_db, frame_rate: float, path, title: str = "") -> Path:
    """A PNG at `path`: the requested loudness (where the control is present) and the produced one, in dB over
    seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = requested.values[:, 0].numpy().astype(np.float64)
    wanted[~requested.present.numpy()] = np.nan  # free frames are not drawn
    produced = np.asarray(produced_db, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.plot(np.arange(produced.size) / frame_rate, produced, color="tab:blue", lw=1.2, label="produced")
    ax.plot(np.arange(wanted.size) / frame_rate, wanted, color="tab:orange", lw=2, ls="--", label="requested")
    ax.set_xlabel("seconds")
    ax.set_ylabel("loudness (dB)")
    ax.set_title(title or "loudness: requested and produced")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
