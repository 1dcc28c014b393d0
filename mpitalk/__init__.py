"""mpitalk: one portrait + an expression track -> a 3D talking head as multiplane images (MPIs).

The method follows IM-Portrait (Li et al., CVPR 2025, arXiv 2504.19165). Conventions (metres,
OpenCV camera axes, pixel centres at +0.5, straight alpha, planes back to front, ``tgt_from_src``)
are documented in README.md and hold in every module.
"""

__version__ = "0.1.0"


class UserError(Exception):
    """An error the user caused (bad file, bad option). CLIs print it as one line and exit 1."""
