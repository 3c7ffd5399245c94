"""Pictures of one trained model (matplotlib, Agg backend), each a PNG named for what it shows:

    samples.png               SAMPLE_GRID x SAMPLE_GRID decoder means of z ~ N(0, I) (model.generate)
    reconstructions.png       RECON_PAIRS rows of pairs: a row of test images, below it their reconstructions
                              likelihood.mean(decoder(representation(x)))
    interpolation_linear.png  INTERP_PAIRS rows: a test image, INTERP_STEPS decoded codes on the straight line
    interpolation_slerp.png   between its code and another test image's, that image; _slerp: the spherical path
    latent_scatter.png        the codes of up to SCATTER_IMAGES test images coloured by label (PCA to 2-D when D > 2)
    manifold.png              D = 2 only: decoded MANIFOLD_SIZE x MANIFOLD_SIZE grid of z over [-1, 1]^2
                              (z1 left to right, z2 bottom to top)

Image grids are drawn pixel for pixel (no resampling; a grey-palette PNG written with Pillow): each image pixel is
`scale(side)` PNG pixels, a one-pixel white gap around every cell, so a grid's PNG size is `grid_pixels(rows, cols,
side)`; every 8-bit grey is kept, or COMPACT_LEVELS greys with `compact` (the sweeps' pictures). Every file is
written atomically, with no version or date in its metadata: the same model, data and seed give the same bytes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError
from bench.results.figures import pyplot, save_png
from lae.utils import atomic_path, model_device

SAMPLE_GRID = 10  # samples.png: 10 x 10 prior samples
RECON_PAIRS, RECON_COLS = 4, 10  # reconstructions.png: 4 pairs of rows of 10 (40 test images)
INTERP_PAIRS, INTERP_STEPS = 8, 10  # interpolations: 8 pairs, 10 decoded points each (endpoints included)
SCATTER_IMAGES = 5000  # latent_scatter.png: at most this many test codes
SCATTER_PIXELS = (800, 640)  # (width, height) of latent_scatter.png
MANIFOLD_SIZE, MANIFOLD_RADIUS = 30, 1.0  # manifold.png: 30 x 30 grid over [-1, 1]^2
MIN_CELL = 28  # a cell is at least this many PNG pixels wide: 8x8 digits are drawn 4x, 28x28 MNIST 1x
GAP = 1  # image pixels between cells
DPI = 100
COMPACT_LEVELS, PALETTE = 32, 256  # draw_all(compact=True), for sweeps: greys per grid, colours of the scatter
PICTURE_NAMES = (
    "samples",
    "reconstructions",
    "interpolation_linear",
    "interpolation_slerp",
    "latent_scatter",
    "manifold",
)  # the files of draw_all, in its order
METADATA = {"Software": None}  # no matplotlib version in the file: deterministic bytes


def picture_dir(results: str | Path, sweep: str, study: str, point: str) -> Path:
    """Where a sweep writes the pictures of one grid point's first seed: <results>/figures/<sweep>/<study>/<point>,
    the point's label made safe for a file name ("lae step_size=1e-06" -> "lae_step_size=1e-06")."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "_", point).strip("_") or "point"
    return Path(results) / "figures" / sweep / study / safe


def leaderboard_lines(results: str | Path, sweep: str, study: str, axis: str, points: list[tuple]) -> list[str]:
    """A leaderboard's "Pictures" section: for each (label, variant, axis value as text) of `points` whose pictures
    are on disk (picture_dir), its samples as a thumbnail and a link to every picture, linked relative to
    <results>/leaderboards/. No pictures: no lines."""
    lines = []
    for label, variant, value in points:
        folder = picture_dir(results, sweep, study, label)
        names = [n for n in PICTURE_NAMES if (folder / f"{n}.png").is_file()]
        if not names:
            continue
        link = Path("..") / folder.relative_to(Path(results))
        thumb = f'<img src="{link}/samples.png" width="150">' if "samples" in names else ""
        files = ", ".join(f"[{n.replace('_', ' ')}]({link}/{n}.png)" for n in names)
        lines.append(f"| {variant} | {value} | {thumb} | {files} |")
    if not lines:
        return []
    head = [
        "## Pictures (first seed of each point)",
        "",
        "Prior samples (decoder means), reconstructions, interpolations, test codes by label and, for D = 2, the "
        "decoded manifold (`bench.results.pictures`; 32 greys per picture).",
        "",
        f"| model | {axis} | samples | pictures |",
        "|---|---:|---|---|",
    ]
    return head + lines + [""]


def image_side(n_pixels: int) -> int:
    """Side of a square image of n_pixels pixels; BenchError when not square."""
    side = math.isqrt(n_pixels)
    if side * side != n_pixels:
        raise BenchError(f"cannot draw images of {n_pixels} pixels: not a square")
    return side


def scale(side: int) -> int:
    """PNG pixels per image pixel: the smallest integer making a cell at least MIN_CELL wide."""
    return max(1, -(-MIN_CELL // side))


def grid_pixels(rows: int, cols: int, side: int) -> tuple[int, int]:
    """(width, height) in PNG pixels of a rows x cols grid of side x side images."""
    k = scale(side)
    return (cols * (side + GAP) + GAP) * k, (rows * (side + GAP) + GAP) * k


def _save(fig, path: Path, compact: bool = False) -> Path:
    """A matplotlib figure as a PNG (atomically); compact: quantized to a palette of PALETTE colours, a third of the
    size (sweeps)."""
    if not compact:
        return save_png(fig, path, dpi=DPI, metadata=METADATA)
    from PIL import Image

    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    pyplot().close(fig)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb)).quantize(PALETTE).save(tmp, format="PNG", optimize=True)
    return path


def save_grid(images: np.ndarray, path: Path, levels: int = 256) -> Path:
    """images (rows, cols, side, side) in [0, 1] (white strokes on black), drawn as a grid (module docstring): a grey
    PNG of `levels` evenly spaced greys (a palette, one byte per pixel; 256: every 8-bit grey), written atomically."""
    from PIL import Image

    rows, cols, side, _ = images.shape
    k = scale(side)
    canvas = np.ones((rows * (side + GAP) + GAP, cols * (side + GAP) + GAP), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            top, left = GAP + r * (side + GAP), GAP + c * (side + GAP)
            canvas[top : top + side, left : left + side] = np.clip(images[r, c], 0.0, 1.0)
    canvas = np.repeat(np.repeat(canvas, k, axis=0), k, axis=1)
    image = Image.fromarray(np.round(canvas * (levels - 1)).astype(np.uint8))  # mode L: grey indices
    image.putpalette([round(v * 255 / (levels - 1)) for v in range(levels) for _ in range(3)])  # now mode P
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return path


@torch.no_grad()
def decode(model, z: torch.Tensor) -> torch.Tensor:
    """Decoder means of codes z (N, D): (N, P) in [0, 1]."""
    return model.likelihood.mean(model.decoder(z.to(model_device(model))))


@torch.no_grad()
def encode(model, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Deterministic codes of images x (N, P): (N, D) on the CPU, in batches of `batch` images."""
    device = model_device(model)
    return torch.cat([model.representation(x[i : i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line: z0, z1 (N, D), t (T,) in [0, 1] -> (N, T, D)."""
    t = t.view(1, -1, 1)
    return (1 - t) * z0[:, None] + t * z1[:, None]


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models): z0, z1 (N, D), t (T,) ->
    (N, T, D), along the great circle between the directions of z0 and z1 (the norm is interpolated with it);
    the straight line where the two directions (nearly) coincide."""
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=-1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)[:, None, None]  # (N, 1, 1) the angle between them
    sin = torch.sin(omega)
    t = t.view(1, -1, 1)
    near = sin.abs() < 1e-6
    safe = torch.where(near, torch.ones_like(sin), sin)
    a = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / safe)
    b = torch.where(near, t, torch.sin(t * omega) / safe)
    return a * z0[:, None] + b * z1[:, None]


def pca_2d(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes z (N, D), D >= 2, projected on their two principal axes: ((N, 2), explained variance fraction (2,)).
    Each axis's sign is fixed (its largest loading positive) so the picture does not flip between runs."""
    centred = z - z.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2] * np.sign(vt[:2, np.abs(vt[:2]).argmax(1)].diagonal())[:, None]
    var = s**2
    return centred @ axes.T, var[:2] / var.sum()


def latent_scatter(z: np.ndarray, labels: np.ndarray, title: str, path: Path, seed: int, compact: bool = False) -> Path:
    """Scatter of codes z (N, D) coloured by label: the codes themselves for D = 2, their first two principal
    components for D > 2, and for D = 1 the code against a random vertical jitter."""
    d = z.shape[1]
    if d == 1:
        xy = np.column_stack([z[:, 0], np.random.default_rng(seed).uniform(-1, 1, len(z))])
        names, title = ("z1", "jitter (no meaning)"), f"{title}: test codes (D = 1)"
    elif d == 2:
        xy, names, title = z, ("z1", "z2"), f"{title}: test codes (D = 2)"
    else:
        xy, frac = pca_2d(z)
        names = tuple(f"PC{i + 1} ({100 * f:.0f}% of variance)" for i, f in enumerate(frac))
        title = f"{title}: test codes, PCA of D = {d} to 2-D"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(SCATTER_PIXELS[0] / DPI, SCATTER_PIXELS[1] / DPI), dpi=DPI)
    cmap, size = plt.get_cmap("tab10"), float(np.clip(10_000 / len(z), 2, 16))  # marker area: fewer points, larger
    for label in np.unique(labels):
        m = labels == label
        ax.scatter(xy[m, 0], xy[m, 1], s=size, color=cmap(int(label) % 10), label=str(label), alpha=0.6, linewidths=0)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"{title} ({len(z)} images)", fontsize=10)
    ax.legend(title="label", markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.subplots_adjust(left=0.1, right=0.85, bottom=0.1, top=0.92)
    return _save(fig, path, compact)


def draw_all(
    model, x: torch.Tensor, y: torch.Tensor, out: Path, seed: int, title: str, compact: bool = False
) -> list[Path]:
    """Every picture of the module docstring for `model` (eval mode) and the test split x (N, P) in [0, 1],
    labels y (N,), into directory `out`. `seed` fixes the prior samples, the test images chosen and the scatter's
    subset. compact (sweeps): COMPACT_LEVELS greys in the grids and a PALETTE-colour scatter, about a third of the
    bytes. Returns the paths written, in the docstring's order."""
    model.eval()
    levels = COMPACT_LEVELS if compact else 256
    d, side = model.config.latent_dim, image_side(x.shape[1])
    gen = torch.Generator(device=model_device(model)).manual_seed(seed)
    rng = np.random.default_rng(seed)

    def as_grid(images: torch.Tensor, rows: int) -> np.ndarray:  # (rows * cols, P) or (rows, ..., P) -> grid
        return images.reshape(rows, -1, side, side).cpu().numpy()

    written = [save_grid(as_grid(model.generate(SAMPLE_GRID**2, gen), SAMPLE_GRID), out / "samples.png", levels)]

    n_recon = min(len(x), RECON_PAIRS * RECON_COLS)
    cols = min(RECON_COLS, n_recon)
    pairs = n_recon // cols
    pick = torch.from_numpy(np.sort(rng.choice(len(x), pairs * cols, replace=False)))
    inputs = x[pick]
    recon = decode(model, encode(model, inputs)).cpu()
    both = torch.stack([inputs.view(pairs, cols, -1), recon.view(pairs, cols, -1)], 1)  # (pairs, 2, cols, P)
    written.append(save_grid(as_grid(both, 2 * pairs), out / "reconstructions.png", levels))

    n_pairs = min(INTERP_PAIRS, len(x) // 2)
    ends = torch.from_numpy(rng.choice(len(x), 2 * n_pairs, replace=False)).view(2, n_pairs)
    z_ends = encode(model, x[ends.flatten()]).view(2, n_pairs, d)
    t = torch.linspace(0.0, 1.0, INTERP_STEPS)
    for name, path_fn in (("linear", lerp), ("slerp", slerp)):
        z = path_fn(z_ends[0], z_ends[1], t).reshape(-1, d)
        middle = decode(model, z).cpu().view(n_pairs, INTERP_STEPS, -1)
        row = torch.cat([x[ends[0]][:, None], middle, x[ends[1]][:, None]], 1)  # (pairs, steps + 2, P)
        written.append(save_grid(as_grid(row, n_pairs), out / f"interpolation_{name}.png", levels))

    subset = np.sort(rng.choice(len(x), min(len(x), SCATTER_IMAGES), replace=False))
    codes = encode(model, x[torch.from_numpy(subset)]).numpy().astype(np.float64)
    written.append(latent_scatter(codes, y.numpy()[subset], title, out / "latent_scatter.png", seed, compact))

    if d == 2:
        axis = torch.linspace(-MANIFOLD_RADIUS, MANIFOLD_RADIUS, MANIFOLD_SIZE)
        z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")  # rows: z2 from +1 (top) to -1
        grid = decode(model, torch.stack([z1.flatten(), z2.flatten()], 1))
        written.append(save_grid(as_grid(grid, MANIFOLD_SIZE), out / "manifold.png", levels))
    return written
