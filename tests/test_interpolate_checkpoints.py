"""scripts/interpolate_checkpoints.py: weights between a base model and its fine-tune."""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from mpitalk import checkpoint
from mpitalk import model as M

_spec = importlib.util.spec_from_file_location(
    "interpolate_checkpoints",
    Path(__file__).resolve().parent.parent / "scripts" / "interpolate_checkpoints.py")
interp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(interp)


def _params(model) -> dict:
    return {p: np.array(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _models():
    base_cfg = M.micro()
    tuned_cfg = dataclasses.replace(base_cfg, flow_bound=0.1)  # adds the flow branch
    return M.MPIModel(base_cfg, rngs=nnx.Rngs(0)), M.MPIModel(tuned_cfg, rngs=nnx.Rngs(1))


def test_interpolation_mixes_shared_weights_and_scales_the_added_branch():
    base, tuned = _models()
    tuned.heads.prior_gate[...] = tuned.heads.prior_gate[...] * 0 + 0.3
    b, t = _params(base), _params(tuned)
    added = interp.interpolate(base, tuned, 0.25)
    out = _params(tuned)
    only_tuned = [p for p in t if p not in b]
    assert only_tuned and sorted(added) == sorted(".".join(map(str, p)) for p in only_tuned
                                                  if "prior_gate" not in p)
    for p, v in out.items():
        if "prior_gate" in p:
            np.testing.assert_array_equal(v, t[p])  # kept: set by hand
        elif p in b:
            np.testing.assert_allclose(v, 0.25 * b[p] + 0.75 * t[p], rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_allclose(v, 0.75 * t[p], rtol=1e-6, atol=1e-7)
    shared = next(p for p in b if np.abs(b[p] - t[p]).max() > 0)
    assert not np.allclose(out[shared], t[shared])  # something did move


def test_alpha_zero_is_the_tuned_model_and_the_script_writes_a_loadable_checkpoint(tmp_path):
    base, tuned = _models()
    t = _params(tuned)
    interp.interpolate(base, tuned, 0.0)
    for p, v in _params(tuned).items():
        np.testing.assert_array_equal(v, t[p])
    checkpoint.save(tmp_path / "base", base.config, base, step=1)
    checkpoint.save(tmp_path / "tuned", tuned.config, tuned, step=7)
    assert interp.main(["--base", str(tmp_path / "base"), "--tuned", str(tmp_path / "tuned"),
                        "--alpha", "1", "--out", str(tmp_path / "mix")]) == 0
    config, mix = checkpoint.load(tmp_path / "mix")
    assert config.flow_bound == pytest.approx(0.1)
    got, want = _params(mix), _params(base)
    for p, v in got.items():
        if p in want:
            np.testing.assert_allclose(v, want[p], rtol=1e-6, atol=1e-7)
    meta = checkpoint.read_meta(tmp_path / "mix")
    assert meta["step"] == 7 and "(step 7)" in meta["note"]  # the tuned model's
    assert "interpolate_checkpoints" in meta["note"]
    with pytest.raises(SystemExit, match="alpha"):
        interp.main(["--base", "a", "--tuned", "b", "--alpha", "1.5", "--out", "c"])


def test_different_architectures_are_refused():
    base = M.MPIModel(dataclasses.replace(M.micro(), channels=(8, 24)), rngs=nnx.Rngs(0))
    tuned = M.MPIModel(M.micro(), rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="not one architecture"):
        interp.interpolate(base, tuned, 0.5)
