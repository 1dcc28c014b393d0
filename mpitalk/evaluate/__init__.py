"""Evaluation: how good, how 3D-consistent, how stable — against baselines and ground truth.

Two modes of ``python -m mpitalk.evaluate``:

1. **Synthetic test set** (``--data DIR --split test``; docs/dataset.md): for every clip the model
   generates an MPI per frame from the clip's identity image and expression track; each MPI is
   rendered into the target camera and the four ground-truth side views (yaw +-10 degrees, both
   stereo eyes) and compared with the ground truth: PSNR, SSIM, LPIPS per view; the
   alpha-weighted depth against the true depth on the foreground (mm) and a Chamfer distance
   between the back-projected surfaces (open3d); expression accuracy (MediaPipe blendshapes and
   head pose read from generated vs ground-truth frames; correlation of jawOpen and eyeBlink over
   time; face-found fraction); flicker relative to ground truth; dlib identity distance. The
   same for the **flat** baseline (the identity image on one opaque plane at the head's depth in
   the reference camera, moved rigidly with the head) and, where meaningful, for the ground
   truth itself. Writes ``metrics.json`` (the headline keys, test-set means, plus
   ``per_identity``), ``details.json`` (every metric for every method) and a self-contained
   ``report.html``.
2. **Real portraits** (``--portraits IMG... --controls TRACK``): no ground truth; identity
   distance, expression following against the driving track, face-found rate, flicker and a
   contact sheet.
3. **Real footage** (``--footage DIR --split test``; a dataset of ``python -m mpitalk.footage``):
   self-reenactment (each clip's identity frame driven by its own track, against the real
   frames: PSNR, SSIM, LPIPS whole and of the face box, identity distance, expression
   agreement, face-found rate, flicker) and cross-reenactment (identity frames and a photo
   driven by other clips' tracks and a driving track with the head held still: expression
   agreement, identity distance, face-found rate, sharpness), for the model, the flat
   baseline and the identity image itself; ``metrics.json`` (``self_reenactment``,
   ``cross_reenactment``, ``by_source``), ``details.json`` (per clip and pair) and
   ``report.html``. Bounded by ``--max-frames`` and ``--max-pairs``.

Means are over clips (each clip's value is its mean over frames); NaN (no face found, nothing
to measure) is left out of a mean and written as ``null``.

Modules: ``scores`` (view and metric names; rendering; expression, identity, flicker and
sharpness scores), ``generation`` (loading the model, generating a clip), ``dataset`` (mode 1),
``portraits`` (mode 2), ``footage`` (mode 3), ``results`` (means over clips,
metrics.json/details.json), ``report`` (report.html and its images), ``cli`` (``main``). The
names below are the public API.
"""

from mpitalk.evaluate.cli import footage_table, main, summary_table
from mpitalk.evaluate.dataset import (
    clip_view_poses,
    evaluate_clip,
    evaluate_dataset,
    flat_mpi,
    tgt_from_ref,
)
from mpitalk.evaluate.footage import evaluate_footage
from mpitalk.evaluate.generation import generate_clip, load_model
from mpitalk.evaluate.portraits import evaluate_portraits, portrait_views
from mpitalk.evaluate.report import (
    REPORT_ROWS,
    colorize_depth,
    contact_sheet,
    grid,
    identity_strip,
    write_dataset_report,
    write_footage_report,
    write_portrait_report,
)
from mpitalk.evaluate.results import headline, json_ready, mean_dicts, nest, write_json
from mpitalk.evaluate.scores import (
    BLINK,
    IMAGE_METRICS,
    METHODS,
    SIDE_VIEWS,
    VIEWS,
    expression_agreement,
    expression_scores,
    extract,
    flicker_scores,
    identity_scores,
    render_frames,
    render_views,
    sharpness,
)

__all__ = [
    "BLINK", "IMAGE_METRICS", "METHODS", "REPORT_ROWS", "SIDE_VIEWS", "VIEWS",
    "clip_view_poses", "colorize_depth", "contact_sheet", "evaluate_clip", "evaluate_dataset",
    "evaluate_footage", "evaluate_portraits", "expression_agreement", "expression_scores",
    "extract", "flat_mpi", "flicker_scores", "footage_table",
    "generate_clip", "grid", "headline", "identity_scores", "identity_strip", "json_ready",
    "load_model", "main", "mean_dicts", "nest", "portrait_views", "render_frames", "render_views",
    "sharpness", "summary_table", "tgt_from_ref", "write_dataset_report", "write_footage_report",
    "write_json", "write_portrait_report",
]
