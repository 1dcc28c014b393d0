"""ModernGL context and shader loading (the one place that creates GL contexts).

Headless rendering uses EGL on Mesa llvmpipe (``moderngl.create_standalone_context(backend="egl")``);
the interactive viewer gets its context from moderngl-window instead.
Shaders live as files in ``shaders/`` (a checkout) or ``mpitalk/shaders`` (an installed wheel).
"""

from __future__ import annotations

import functools
from pathlib import Path

import moderngl

from mpitalk import UserError

_CONTEXT: moderngl.Context | None = None


def shader_dir() -> Path:
    """The folder holding the GLSL files: ``mpitalk/shaders`` in a wheel, ``shaders/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "shaders", here.parent / "shaders"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"GLSL shader folder not found next to {here}; reinstall mpitalk")


@functools.cache
def shader_source(name: str) -> str:
    """The text of ``shaders/<name>`` (e.g. ``"mpi.frag"``)."""
    path = shader_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"shader {path} is missing; reinstall mpitalk")
    return path.read_text()


def program(ctx: moderngl.Context, vert: str, frag: str, **defines: int | float) -> moderngl.Program:
    """Compile a program from two shader files; ``defines`` become ``#define NAME value`` lines
    inserted after the ``#version`` line of both stages."""

    def with_defines(src: str) -> str:
        if not defines:
            return src
        head, _, rest = src.partition("\n")
        lines = "".join(f"#define {k} {v}\n" for k, v in defines.items())
        return f"{head}\n{lines}{rest}"

    return ctx.program(
        vertex_shader=with_defines(shader_source(vert)),
        fragment_shader=with_defines(shader_source(frag)),
    )


def context() -> moderngl.Context:
    """The process-wide headless GL context (EGL, Mesa llvmpipe on a CPU machine), created once."""
    global _CONTEXT
    if _CONTEXT is None:
        try:
            _CONTEXT = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as exc:  # noqa: BLE001 - any failure here means the system lacks EGL
            raise UserError(
                f"cannot create a headless OpenGL context ({exc}); "
                "run scripts/setup_system.sh to install libegl1 libegl-mesa0 libgl1-mesa-dri"
            ) from exc
    return _CONTEXT
