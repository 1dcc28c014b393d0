"""Expression controls: the 52 ARKit blendshapes plus a head pose per frame.

(Skeleton: the full module — load/save, Live Link Face import, resampling, smoothing — is being
written under issue 4. ``ARKIT_NAMES`` and ``Track`` are the stable interface.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ARKit's 52 blendshape names in ARKit's spelling, in the order Live Link Face writes them.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft",
    "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
assert len(ARKIT_NAMES) == 52
POSE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll", "tx", "ty", "tz")


@dataclass
class Track:
    """An expression track: ``values`` (T,52) in [0,1] in ``names`` order, ``pose`` (T,6) as
    (yaw, pitch, roll, tx, ty, tz) radians/metres (``camera.head_pose_matrix``), at ``fps``."""

    values: np.ndarray
    pose: np.ndarray
    fps: float
    names: tuple[str, ...] = ARKIT_NAMES

    def __len__(self) -> int:
        return int(self.values.shape[0])
