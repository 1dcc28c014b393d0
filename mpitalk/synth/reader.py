"""Read the dataset: ``ClipDataset``, the clips of one split, hiding ground truth in training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mpitalk import UserError

# what training reads. Not ``identity_alpha``: training never uses it and clips from video
# (``mpitalk.footage``) have none
_TRAIN_KEYS = (
    "identity_rgb",
    "identity_controls",
    "identity_pose",
    "identity_cond",
    "K",
    "controls",
    "pose",
    "cond",
    "target_rgb",
)


class ClipDataset:
    """Clips of one split. ``ds[i]`` -> {key: numpy array} as in docs/dataset.md.

    With ``hide_ground_truth=True`` (training) only ``_TRAIN_KEYS`` are read from the NPZ: no
    depth, alpha or extra views are ever loaded, as real monocular video would not have them.
    A dataset made from video (manifest ``source`` ``"video"``, ``mpitalk.footage``) has a
    tracked head mask, not ground truth, in ``target_alpha``: training gets it as ``head_mask``
    (T,S,S) uint8 (255 = head), the region where one rigid head motion explains the frame.
    """

    def __init__(self, root: str | Path, split: str = "train", hide_ground_truth: bool = True):
        self.root = Path(root)
        path = self.root / "manifest.json"
        if not path.is_file():
            raise UserError(
                f"{path} not found; generate data with python -m mpitalk.synth --out {root}"
            )
        self.manifest = json.loads(path.read_text())
        if split not in self.manifest["splits"]:
            raise UserError(
                f"split {split!r} not in {path}; choose from {sorted(self.manifest['splits'])}"
            )
        self.files = [self.root / p for p in self.manifest["splits"][split]]
        self.hide_ground_truth = hide_ground_truth
        # datasets written before footage existed have no "source": they are synthetic
        self.source = self.manifest.get("source", "synthetic")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        with np.load(self.files[i], allow_pickle=False) as z:
            if not self.hide_ground_truth:
                return {k: z[k] for k in z.files}
            missing = [k for k in _TRAIN_KEYS if k not in z.files]
            if missing:
                raise UserError(f"{self.files[i]}: lacks {', '.join(missing)}; rebuild the "
                                "dataset (docs/dataset.md)")
            out = {k: z[k] for k in _TRAIN_KEYS}
            if self.source == "video":
                out["head_mask"] = z["target_alpha"]
            return out


def identity_of(path: str | Path) -> str:
    """The identity id of a clip file: ``IIII`` of ``clip-IIII-CC.npz`` (``clip_name``), the
    video stem of ``clip-STEM-NNNN.npz`` (``mpitalk.footage``); else the file name."""
    stem = Path(path).stem
    m = re.fullmatch(r"clip-(.+)-\d+", stem)
    return m.group(1) if m else stem


def true_identity_info(clip: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The identity image's true ``identity_cond`` (float [0,1]) and ``identity_expression``
    (52 blendshapes + head pose), as the model's conditions take them."""
    return {"identity_cond": clip["identity_cond"].astype(np.float32) / 255.0,
            "identity_expression": np.concatenate(
                [clip["identity_controls"], clip["identity_pose"]]).astype(np.float32)}
