"""The choices of generation that the CLI offers, in a module with no imports.

:mod:`mpitalk.generate` (JAX) uses them and :mod:`mpitalk.job` / :mod:`mpitalk.render` check and
offer them; defining them here lets the job check its options without importing JAX, and keeps
imports following the data flow (job -> generate, never back).
"""

SPACES = ("reference", "target")  # camera the model makes each MPI in (mpitalk.generate)
PREV_MODES = ("anchor", "chain", "none")  # earlier frame later clips are conditioned on
GEOMETRIES = ("surface", "layers")  # how each frame's planes are stored (mpitalk.surface)
PRIOR_FILLS = ("outside", "none")  # the rig prior's flow past the face (mpitalk.flow_fill):
# carried outwards without folds, or zero as in training
PAINTS = ("holes", "model")  # where the colour branch's painted colour is shown (mpitalk.paint)
BODIES = ("world", "head")  # with the world backdrop, what the body does (mpitalk.body): stays
# with the room while the head moves on the neck, or moves with the head
