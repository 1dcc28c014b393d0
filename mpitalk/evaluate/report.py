"""The self-contained report.html of both evaluation modes, and the images in it.

Tables of test-set means, bar charts of the image metrics per view, expression tracks over
time, and labelled image grids (identity strips, contact sheets); every image is embedded as a
PNG ``data:`` URI so the report is one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpitalk import metrics
from mpitalk.evaluate.scores import BLINK, IMAGE_METRICS, METHODS, VIEWS

FOOTAGE_METHODS = ("model", "flat", "identity_image")  # evaluate.footage.METHODS (no import
# cycle: footage imports this module)

# (dotted metric, label, better: "high" / "low" / "" for neutral)
REPORT_ROWS: tuple[tuple[str, str, str], ...] = tuple(
    (f"views.{v}.{m}", f"{v} {m.upper()}", "high" if m != "lpips" else "low")
    for v in VIEWS for m in IMAGE_METRICS) + (
    ("geometry.depth_mae_mm", "depth MAE on the foreground (mm)", "low"),
    ("geometry.chamfer_mm", "Chamfer distance of visible surfaces (mm)", "low"),
    ("expression.mae", "blendshape MAE vs ground-truth frames", "low"),
    ("expression.pose_error_deg", "head rotation error vs ground-truth frames (deg)", "low"),
    ("expression.jaw_open_corr", "jawOpen correlation vs ground-truth frames", "high"),
    ("expression.eye_blink_corr", "eyeBlink correlation vs ground-truth frames", "high"),
    ("expression.mae_vs_controls", "blendshape MAE vs the true controls", "low"),
    ("expression.pose_error_deg_vs_controls", "head rotation error vs the true pose (deg)", "low"),
    ("expression.jaw_open_corr_vs_controls", "jawOpen correlation vs the true controls", "high"),
    ("expression.eye_blink_corr_vs_controls", "eyeBlink correlation vs the true controls",
     "high"),
    ("expression.face_found", "MediaPipe face-found fraction", "high"),
    ("identity.distance", "dlib identity distance to the identity image (< 0.6 same)", "low"),
    ("identity.face_found", "dlib face-found fraction", "high"),
    ("temporal.flicker", "flicker, all frame pairs (mean abs diff)", ""),
    ("temporal.flicker_ratio", "flicker relative to ground truth, all pairs", ""),
    ("temporal.flicker_held", "flicker on held expressions", ""),
    ("temporal.flicker_held_ratio", "flicker on held expressions relative to ground truth", ""),
)

_CSS = """body{font-family:sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}
img{image-rendering:pixelated;max-width:100%}.note{color:#555;font-size:90%}"""


def _png_uri(buf: io.BytesIO) -> str:
    """A data: URI of the PNG bytes in ``buf``."""
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _png_b64(image: np.ndarray) -> str:
    """A data: URI of an image (H,W,3) float [0,1] or uint8 as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(metrics.to_uint8(image)).save(buf, format="PNG")
    return _png_uri(buf)


def _fig_b64(fig) -> str:
    """A data: URI of a matplotlib figure as PNG; closes the figure."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return _png_uri(buf)


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _page(title: str, heading: str, parts: Sequence[str]) -> str:
    """A self-contained HTML page: ``parts`` one per line under an <h1> ``heading``."""
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_CSS}</style></head><body><h1>{heading}</h1>")
    return "\n".join([head, *parts, "</body></html>"])


def _num(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "&ndash;"
    if isinstance(x, float) and math.isinf(x):
        return "&infin;"
    return f"{x:.4g}"


def _lookup(nested: dict, key: str):
    """The value at dotted ``key`` in a nested dict; NaN where there is none."""
    for k in key.split("."):
        if not isinstance(nested, dict) or k not in nested:
            return math.nan
        nested = nested[k]
    return nested


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='n'>{_num(c)}</td>" if not isinstance(c, str) else f"<td>{html.escape(c)}</td>"
        for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def colorize_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(H,W,3) float turbo colours of a depth map, near = red, far = blue, over [lo, hi] m."""
    import matplotlib

    x = np.clip((np.asarray(depth, np.float64) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return matplotlib.colormaps["turbo"](1.0 - x)[..., :3]


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(metrics.to_uint8(tile))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 6 * len(text) + 4, 11], fill=(0, 0, 0))
    draw.text((2, 0), text, fill=(255, 255, 255))
    return np.asarray(im)


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(metrics.to_uint8(image))
    return np.asarray(im.resize((size, size), Image.NEAREST if im.width < size else Image.LANCZOS))


def grid(rows: Sequence[Sequence[tuple[np.ndarray | None, str]]], size: int = 128) -> np.ndarray:
    """A labelled image grid (uint8): rows of (image or None for blank, label) tiles."""
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * size, cols * size, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, (image, text) in enumerate(row):
            if image is not None:
                out[i * size:(i + 1) * size, j * size:(j + 1) * size] = _label(
                    _tile(image, size), text)
    return out


def identity_strip(images: dict) -> np.ndarray:
    """identity / ground truth / generated / flat rows over the five views and the depth map."""
    fg = images["fg"]
    gt_d = images["gt_depth"]
    lo = float(gt_d[fg].min()) - 0.02 if fg.any() else 0.45
    hi = float(gt_d[fg].max()) + 0.05 if fg.any() else 0.8
    names = ("target", "yaw +10", "yaw -10", "left eye", "right eye")
    rows = [[(images["identity"], "identity")] +
            [(im, f"GT {n}") for im, n in zip(images["gt"], names, strict=True)] +
            [(colorize_depth(gt_d, lo, hi), "GT depth")]]
    for key, label in (("model", "gen"), ("flat", "flat")):
        if key in images:
            rows.append([(None, "")] +
                        [(im, f"{label} {n}") for im, n in zip(images[key], names, strict=True)] +
                        [(colorize_depth(images[f"{key}_depth"], lo, hi), f"{label} depth")])
    return grid(rows)


def _view_plot(totals: dict[str, dict[str, float]]):
    """Bar charts of PSNR, SSIM and LPIPS per view, model next to the flat baseline."""
    fig, axes = _pyplot().subplots(1, 3, figsize=(13, 3.2))
    x = np.arange(len(VIEWS))
    methods = [m for m in ("model", "flat") if m in totals]
    for ax, m in zip(axes, IMAGE_METRICS, strict=True):
        for k, method in enumerate(methods):
            vals = [totals[method].get(f"views.{v}.{m}", math.nan) for v in VIEWS]
            ax.bar(x + (k - (len(methods) - 1) / 2) * 0.38, vals, 0.38, label=method)
        ax.set_xticks(x, VIEWS, rotation=20)
        ax.set_title(m.upper() + (" (lower is better)" if m == "lpips" else " (higher is better)"))
    axes[0].legend(loc="lower left", framealpha=0.9)
    return fig


def _track_plot(tracks_by_id: dict[str, dict], channel: str):
    """``channel`` (an ARKit name, or "eyeBlink": both blinks' mean) over time, one panel per
    identity (the first four), one line per track."""
    from mpitalk.controls import ARKIT_NAMES

    ids = list(tracks_by_id)[:4]
    fig, axes = _pyplot().subplots(1, max(1, len(ids)), figsize=(3.6 * max(1, len(ids)), 2.8),
                             squeeze=False)
    cols = ([ARKIT_NAMES.index(channel)] if channel in ARKIT_NAMES
            else [ARKIT_NAMES.index(n) for n in BLINK])
    for ax, ident in zip(axes[0], ids, strict=False):
        for name, values in tracks_by_id[ident].items():
            if values is not None:
                ax.plot(np.asarray(values)[:, cols].mean(1), label=name,
                        ls="--" if name == "true" else "-")
        ax.set_title(f"identity {ident}: {channel}")
        ax.set_xlabel("frame")
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].legend(fontsize=7)
    return fig


def write_dataset_report(path: Path, details: dict, totals: dict[str, dict[str, float]],
                         per_identity: dict, strips: dict[str, dict]) -> None:
    """The self-contained HTML report of a synthetic-set evaluation."""
    methods = [m for m in METHODS if m in totals]
    parts = ["<p>" + html.escape(
                 f"checkpoint {details['checkpoint']} · data {details['data']} · split "
                 f"{details['split']} · {details['clips']} clips × {details['frames_per_clip']} "
                 f"frames · {details['steps']} sampler steps · seed {details['seed']} · "
                 f"{details['seconds']:.0f} s") + "</p>",
             "<p class='note'>Test-set means over clips. <b>model</b>: generated MPIs rendered "
             "to each view; <b>flat</b>: the identity image on one opaque plane at the head "
             "depth, moved rigidly with the head; <b>ground_truth</b>: the true frames, where "
             "meaningful. Expression metrics read MediaPipe blendshapes/pose from the rendered "
             "target frames. Flicker on the target view's foreground; held = frame pairs whose "
             "controls and pose barely change. &ndash; = not applicable or no face found.</p>",
             "<h2>Summary</h2>",
             _table(["metric", "better"] + methods,
                    [[label, better] + [totals[m].get(key, math.nan) for m in methods]
                     for key, label, better in REPORT_ROWS
                     if any(key in totals[m] for m in methods)]),
             f"<img src='{_fig_b64(_view_plot(totals))}'>"]
    parts.append("<h2>Per identity</h2>")
    cols = [("views.target.psnr", "target PSNR"), ("views.yaw_plus10.psnr", "yaw+10 PSNR"),
            ("views.target.lpips", "target LPIPS"), ("geometry.depth_mae_mm", "depth MAE mm"),
            ("expression.mae", "expr MAE"), ("identity.distance", "id dist")]

    shown = [m for m in ("model", "flat") if m in methods]
    parts.append(_table(["identity"] + [f"{m}: {c}" for m in shown for _, c in cols],
                        [[k] + [_lookup(v.get(m, {}), key) for m in shown for key, _ in cols]
                         for k, v in per_identity.items()]))
    tracks = {k: v["tracks"] for k, v in strips.items()}
    parts.append(f"<img src='{_fig_b64(_track_plot(tracks, 'jawOpen'))}'>")
    parts.append(f"<img src='{_fig_b64(_track_plot(tracks, 'eyeBlink'))}'>")
    parts.append("<p class='note'>jawOpen / eyeBlink over time in each identity's first clip: "
                 "the true controls (dashed) and what MediaPipe reads from each method's "
                 "frames.</p>")
    for ident, images in strips.items():
        parts.append(f"<h3>identity {html.escape(ident)}</h3>"
                     f"<img src='{_png_b64(identity_strip(images))}'>")
    path.write_text(_page("mpitalk evaluation", "mpitalk evaluation", parts))


def contact_sheet(sheets: dict[str, dict], num_frames: int = 6) -> np.ndarray:
    """Per portrait a row: the identity, ``num_frames`` frames spread over the track, and the
    middle frame from yaw +-10 degrees and both eyes."""
    rows = []
    for name, s in sheets.items():
        T = len(s["frames"])
        idx = np.unique(np.linspace(0, T - 1, min(num_frames, T)).round().astype(int))
        rows.append([(s["identity"], name[:18])] + [(s["frames"][t], f"frame {t}") for t in idx]
                    + [(im, n) for im, n in zip(s["views"][1:], ("yaw +10", "yaw -10", "left",
                                                                  "right"), strict=True)])
    return grid(rows)


def write_portrait_report(out: Path, result: dict, rows: dict[str, dict[str, float]],
                          total: dict[str, float], sheets: dict[str, dict], track) -> None:
    """contact_sheet.png and the self-contained report.html of a real-portrait evaluation."""
    from PIL import Image

    sheet = contact_sheet(sheets)
    Image.fromarray(sheet).save(out / "contact_sheet.png")
    keys = [("identity.distance", "identity distance (< 0.6 same)"),
            ("identity.face_found", "dlib face found"),
            ("expression.mae", "blendshape MAE vs track"),
            ("expression.pose_error_deg", "rotation error vs track (deg)"),
            ("expression.jaw_open_corr", "jawOpen corr"),
            ("expression.eye_blink_corr", "eyeBlink corr"),
            ("expression.face_found", "MediaPipe face found"),
            ("temporal.flicker", "flicker"), ("temporal.flicker_held", "flicker (held)")]
    tracks = {name: {"track": track.values, "generated": s["extracted"]}
              for name, s in sheets.items()}
    parts = ["<p>" + html.escape(f"track {result['controls']} · {result['frames']} frames · "
                                 f"{result['steps']} sampler steps") + "</p>",
             "<p class='note'>No ground truth: identity is the dlib distance between the "
             "cropped portrait and each generated frame; expression following compares what "
             "MediaPipe reads from the generated frames with the driving track.</p>",
             _table(["portrait"] + [c for _, c in keys],
                    [[n] + [r.get(k, math.nan) for k, _ in keys] for n, r in rows.items()] +
                    [["mean"] + [total.get(k, math.nan) for k, _ in keys]]),
             f"<img src='{_fig_b64(_track_plot(tracks, 'jawOpen'))}'>",
             f"<h2>Contact sheet</h2><img src='{_png_b64(sheet)}'>"]
    (out / "report.html").write_text(_page("mpitalk portraits", "mpitalk on real portraits", parts))




# --- real footage ---------------------------------------------------------------------------

# (metric, label, better) of the two footage tables
FOOTAGE_SELF_ROWS: tuple[tuple[str, str, str], ...] = (
    ("psnr", "PSNR vs the real frames (dB)", "high"),
    ("ssim", "SSIM vs the real frames", "high"),
    ("lpips", "LPIPS vs the real frames", "low"),
    ("face_lpips", "LPIPS of the face box (128 px)", "low"),
    ("psnr_head", "PSNR on the head mask (dB)", "high"),
    ("lpips_head", "LPIPS, the real background around the head", "low"),
    ("identity_distance", "dlib distance to the identity frame (< 0.6 same)", "low"),
    ("expr_corr", "expression correlation with the real frames", "high"),
    ("amplitude", "expression amplitude / the real frames'", "1"),
    ("face_found", "MediaPipe face-found fraction", "high"),
    ("flicker", "flicker on the head mask (mean abs diff)", "= real"),
)
FOOTAGE_CROSS_ROWS: tuple[tuple[str, str, str], ...] = (
    ("expr_corr", "expression correlation with the driving track", "high"),
    ("amplitude", "expression amplitude / the driving track's", "1"),
    ("identity_distance", "dlib distance to the photo (< 0.6 same)", "low"),
    ("identity_same", "share of frames at dlib distance < 0.6 to the photo", "high"),
    ("face_found", "MediaPipe face-found fraction", "high"),
    ("sharpness", "face-box Laplacian variance / the photo's", "1"),
)


def _jpeg_b64(image: np.ndarray, quality: int = 85) -> str:
    """A data: URI of an image (H,W,3) as JPEG (photographic strips: a tenth of a PNG)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(metrics.to_uint8(image)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plain(x) -> str:
    """A number as text for a cell that holds several ("-": none)."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _footage_table(table: dict, rows: Sequence[tuple[str, str, str]], extra: dict | None = None
                   ) -> str:
    """metric rows x method columns of ``table`` {method: {metric: value}}; ``extra``: one
    more column (the real frames' own values)."""
    methods = list(table)
    header = ["metric", "better"] + methods + (["real frames"] if extra is not None else [])
    body = [[label, better] + [table[m].get(key, math.nan) if table[m].get(key) is not None
                               else math.nan for m in methods]
            + ([extra.get(key, math.nan) if extra.get(key) is not None else math.nan]
               if extra is not None else [])
            for key, label, better in rows]
    return _table(header, body)


def _footage_track_plot(panels: dict[str, dict], channel: str = "jawOpen"):
    """``channel`` over the frames used, one panel per title, one line per track."""
    from mpitalk.controls import ARKIT_NAMES

    c = ARKIT_NAMES.index(channel)
    names = list(panels)[:4]
    fig, axes = _pyplot().subplots(1, max(1, len(names)), figsize=(3.8 * max(1, len(names)), 2.8),
                                   squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        for label, values in panels[name].items():
            if values is not None:
                ax.plot(np.asarray(values)[:, c], label=label,
                        ls="--" if label in ("real", "driver") else "-")
        ax.set_title(f"{name[:34]}: {channel}", fontsize=8)
        ax.set_xlabel("frame")
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].legend(fontsize=7)
    return fig


def write_footage_report(path: Path, result: dict, details: dict, self_images: dict,
                         cross_images: dict) -> None:
    """The self-contained HTML report of a real-footage evaluation: the tables of means (all
    clips, per source video), per clip and per pair, jawOpen over time, and frames side by side
    (real, generated, flat) for the first clip / pair of each source."""
    run = result["run"]
    parts = ["<p>" + html.escape(
        f"checkpoint {run['checkpoint']} · data {run['data']} · split {run['split']} · "
        f"{run['clips']} clips, frames {run['frames_per_clip']} · {run['pairs']} cross pairs · "
        f"{run['steps']} sampler steps · seed {run['seed']} · {run['seconds']:.0f} s") + "</p>",
        "<p class='note'><b>model</b>: generated MPIs rendered at each frame's pose; "
        "<b>flat</b>: the identity image on one opaque plane at the head's depth, moved rigidly "
        "with the head; <b>identity_image</b>: the identity image itself, unchanged. "
        "Self-reenactment: each clip's identity frame driven by its own track and head motion, "
        "compared with the real frames. Cross-reenactment: identity frames and the photo driven "
        "by other clips' tracks and the driving track with the head held still (pose scale 0), "
        "so the flat baseline is the photo itself. Expression agreement: per blendshape whose "
        "driver moves (std &ge; 0.08), the correlation and the std ratio (amplitude), averaged; "
        "a response that does not move counts as correlation 0. Sharpness: variance of the "
        "Laplacian of the photo's face box (128 px) as a fraction of the photo's. Means over "
        "clips / pairs; &ndash; = nothing to measure.</p>",
        "<h2>Self-reenactment</h2>",
        _footage_table(result["self_reenactment"], FOOTAGE_SELF_ROWS,
                       result["reference"]["real_frames"])]
    for source, table in result["by_source"]["self_reenactment"].items():
        parts += [f"<h3>{html.escape(source)}</h3>",
                  _footage_table(table, FOOTAGE_SELF_ROWS)]
    parts += ["<h2>Cross-reenactment</h2>",
              _footage_table(result["cross_reenactment"], FOOTAGE_CROSS_ROWS)]
    for source, table in result["by_source"]["cross_reenactment"].items():
        parts += [f"<h3>identity from {html.escape(source)}</h3>",
                  _footage_table(table, FOOTAGE_CROSS_ROWS)]

    parts.append("<h2>Expression agreement over all frames of a source at once</h2>"
                 "<p class='note'>Each clip's / pair's series concatenated before the "
                 "per-blendshape correlation and amplitude (a 12-frame clip rarely has a "
                 "channel that moves 0.08): correlation / amplitude / channels.</p>")
    for task, pooled in result["expression_pooled"].items():
        methods = [m for m in FOOTAGE_METHODS if any(m in v for v in pooled.values())]
        parts.append(f"<h3>{task}</h3>" + _table(["source"] + list(methods), [
            [source] + [" / ".join(_plain(v.get(m, {}).get(k)) for k in
                                   ("expr_corr", "amplitude", "expr_channels"))
                        for m in methods] for source, v in pooled.items()]))
    cols = ("psnr", "lpips", "face_lpips", "identity_distance", "expr_corr", "amplitude")
    methods = [m for m in ("model", "flat") if m in result["self_reenactment"]]
    parts += ["<h2>Per clip (self-reenactment)</h2>", _table(
        ["clip", "source"] + [f"{m}: {c}" for m in methods for c in cols],
        [[r["clip"], r["source"]] + [_lookup(r, f"{m}.{c}") for m in methods for c in cols]
         for r in details["self_reenactment"]])]
    cols = ("expr_corr", "amplitude", "identity_distance", "face_found", "sharpness")
    parts += ["<h2>Per pair (cross-reenactment)</h2>", _table(
        ["identity", "driver"] + [f"{m}: {c}" for m in methods for c in cols],
        [[r["photo"], r["driver"]] + [_lookup(r, f"{m}.{c}") for m in methods for c in cols]
         for r in details["cross_reenactment"]])]

    if self_images:
        panels = {name: im["tracks"] for name, im in self_images.values()}
        parts.append(f"<img src='{_fig_b64(_footage_track_plot(panels))}'>")
        parts.append("<p class='note'>jawOpen read by MediaPipe from the real frames (dashed) "
                     "and from each method's frames.</p>")
    for source, (name, im) in self_images.items():
        rows = [[(im["identity"], "identity")] +
                [(f, f"real {t}") for f, t in zip(im["real"], im["picks"], strict=True)]]
        for m in ("model", "flat"):
            if m in im:
                rows.append([(None, "")] + [(f, f"{m} {t}") for f, t in
                                            zip(im[m], im["picks"], strict=True)])
        parts.append(f"<h3>self: {html.escape(name)} ({html.escape(source)})</h3>"
                     f"<img src='{_jpeg_b64(grid(rows, 112))}'>")
    if cross_images:
        panels = {name: im["tracks"] for name, im in cross_images.values()}
        parts.append(f"<img src='{_fig_b64(_footage_track_plot(panels))}'>")
        parts.append("<p class='note'>jawOpen of the driving track (dashed) and read by "
                     "MediaPipe from each method's frames.</p>")
    for name, im in cross_images.values():
        rows = []
        if "driver" in im:
            rows.append([(im["photo"], "photo")] + [(f, f"driver {t}") for f, t in
                                                    zip(im["driver"], im["picks"], strict=True)])
        for m in ("model", "flat"):
            if m in im:
                rows.append([(im["photo"] if not rows else None, "photo" if not rows else "")] +
                            [(f, f"{m} {t}") for f, t in zip(im[m], im["picks"], strict=True)])
        parts.append(f"<h3>cross: {html.escape(name)}</h3>"
                     f"<img src='{_jpeg_b64(grid(rows, 112))}'>")
    path.write_text(_page("mpitalk footage evaluation", "mpitalk on real footage", parts))
