"""One clip's motion: windows of the rig's captured performance (speed changes, mirroring)
blended with random blendshape combinations, a head pose with sway, and the identity frame."""

from __future__ import annotations

import numpy as np

from mpitalk import rig
from mpitalk.controls import ARKIT_NAMES
from mpitalk.synth.identity import _smoothstep

FPS = 15.0  # dataset frame rate: every other frame of the 30 fps performance at speed 1
_IDX = {n: i for i, n in enumerate(ARKIT_NAMES)}


def _mirror_weights(w: np.ndarray) -> np.ndarray:
    """Swap Left/Right blendshapes (and jawLeft/jawRight, mouthLeft/mouthRight) of (...,52)."""
    out = w.copy()
    for i, n in enumerate(ARKIT_NAMES):
        for a, b in (("Left", "Right"), ("Right", "Left")):
            if n.endswith(a) or n in ("jaw" + a, "mouth" + a):
                m = n[: -len(a)] + b if n.endswith(a) else n.replace(a, b)
                out[..., i] = w[..., _IDX[m]]
    return out


_COMBOS = (  # random blendshape combinations: (name, max weight)
    (
        ("mouthSmileLeft", 1.0),
        ("mouthSmileRight", 1.0),
        ("cheekSquintLeft", 0.6),
        ("cheekSquintRight", 0.6),
        ("eyeSquintLeft", 0.4),
        ("eyeSquintRight", 0.4),
    ),
    (
        ("jawOpen", 0.9),
        ("browInnerUp", 1.0),
        ("browOuterUpLeft", 1.0),
        ("browOuterUpRight", 1.0),
        ("eyeWideLeft", 0.8),
        ("eyeWideRight", 0.8),
    ),
    (
        ("mouthFrownLeft", 1.0),
        ("mouthFrownRight", 1.0),
        ("browDownLeft", 0.8),
        ("browDownRight", 0.8),
        ("mouthPressLeft", 0.5),
        ("mouthPressRight", 0.5),
    ),
    (("mouthPucker", 1.0), ("mouthFunnel", 0.6)),
    (("jawOpen", 0.6), ("mouthStretchLeft", 0.6), ("mouthStretchRight", 0.6)),
    (("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0)),
    (("mouthSmileLeft", 0.9), ("eyeBlinkLeft", 0.9), ("cheekSquintLeft", 0.5)),
    (
        ("noseSneerLeft", 0.8),
        ("noseSneerRight", 0.8),
        ("mouthUpperUpLeft", 0.7),
        ("mouthUpperUpRight", 0.7),
        ("browDownLeft", 0.6),
        ("browDownRight", 0.6),
    ),
    (("cheekPuff", 1.0), ("mouthClose", 0.4)),
    (("jawOpen", 0.5), ("tongueOut", 0.8)),
    (("mouthLeft", 0.8), ("jawLeft", 0.5)),
    (("mouthRollLower", 0.8), ("mouthRollUpper", 0.8), ("mouthShrugLower", 0.6)),
)


def _combo(rng: np.random.Generator) -> np.ndarray:
    w = np.zeros(52, np.float32)
    for _ in range(rng.integers(1, 3)):
        for name, mx in _COMBOS[rng.integers(len(_COMBOS))]:
            w[_IDX[name]] = max(w[_IDX[name]], mx * rng.uniform(0.4, 1.0))
    if rng.uniform() < 0.5:
        w = _mirror_weights(w) if rng.uniform() < 0.5 else w
    return w


def make_motion(
    seed: int, identity: int, clip: int, frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(controls (T,52), pose (T,6), identity controls (52,), identity pose (6,)) for one clip."""
    rng = np.random.default_rng([seed, identity, clip + 100])
    perf = rig.load().performance
    n = len(perf)
    speed = rng.uniform(0.6, 1.6)
    step = perf.fps / FPS * speed
    span = step * (frames - 1)
    t0 = rng.uniform(0, max(n - 1 - span, 0))
    t = np.clip(t0 + step * np.arange(frames), 0, n - 1)
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (t - i0)[:, None]
    w = perf.values[i0] * (1 - f) + perf.values[i1] * f
    pose_perf = perf.pose[i0] * (1 - f) + perf.pose[i1] * f
    mirror = rng.uniform() < 0.5
    if mirror:
        w = _mirror_weights(w)
        pose_perf = pose_perf * np.array([-1, 1, -1, -1, 1, 1])
    w = w * rng.uniform(0.6, 1.4)
    # blend in random expression combinations, ramping smoothly between two of them
    a, b = _combo(rng), _combo(rng)
    mix = rng.uniform(0.0, 1.0)
    ramp = _smoothstep(rng.uniform(-0.5, 0.5), rng.uniform(0.5, 1.5), np.linspace(0, 1, frames))
    combo = a * (1 - ramp[:, None]) + b * ramp[:, None]
    w = np.clip(np.maximum(w * (1 - 0.5 * mix), combo * mix), 0, 1).astype(np.float32)
    # head pose: a base orientation within ~+-15 deg, the performance's motion, a slow sway
    base = np.radians(rng.uniform([-15, -12, -6], [15, 10, 6]))
    phase = rng.uniform(0, 2 * np.pi, 3)
    amp = np.radians(rng.uniform(0, 6, 3))
    tt = np.arange(frames) / FPS
    sway = amp * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * tt[:, None] + phase)
    rot = base + (pose_perf[:, :3] - perf.pose[:, :3].mean(0)) * rng.uniform(0.5, 1.5) + sway
    rot[:, :2] = np.clip(rot[:, :2], np.radians(-20), np.radians(20))
    trans = (pose_perf[:, 3:] - perf.pose[:, 3:].mean(0)) + np.array(
        [rng.uniform(-0.02, 0.02), rng.uniform(-0.015, 0.02), 0.6 + rng.uniform(-0.04, 0.05)]
    )
    pose = np.concatenate([rot, trans], 1).astype(np.float32)
    # identity (reference) frame: near-neutral expression, near-frontal
    wid = np.clip(perf.values[rng.integers(n)] * rng.uniform(0.0, 0.3), 0, 1)
    wid[_IDX["eyeBlinkLeft"]] = wid[_IDX["eyeBlinkRight"]] = 0.0
    pid = np.array(
        [
            *np.radians(rng.uniform([-6, -5, -3], [6, 5, 3])),
            rng.uniform(-0.01, 0.01),
            rng.uniform(-0.01, 0.01),
            0.6 + rng.uniform(-0.02, 0.02),
        ]
    )
    return w, pose, wid.astype(np.float32), pid.astype(np.float32)
