"""Reading the GLSL sources shipped in ``render/gl/shaders`` and building programs from them."""

from __future__ import annotations

from functools import cache
from importlib import resources

from scenes.errors import BackendError

__all__ = ["shader_source", "build_program"]


@cache
def shader_source(name: str) -> str:
    """The text of ``render/gl/shaders/<name>``, with each ``#include "file"`` line replaced by that file's text."""
    text = resources.files("render.gl").joinpath("shaders", name).read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#include"):
            included = stripped[len("#include") :].strip().strip('"')
            if not included or included == name:
                raise BackendError(f"shader {name}: bad include line {line!r}")
            lines.append(shader_source(included))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def build_program(ctx, vertex: str, fragment: str | None = None, varyings: tuple[str, ...] = ()):
    """A linked program from shader file names; compile/link errors become :class:`BackendError`."""
    try:
        return ctx.program(
            vertex_shader=shader_source(vertex),
            fragment_shader=shader_source(fragment) if fragment else None,
            varyings=list(varyings),
        )
    except Exception as exc:  # noqa: BLE001 - moderngl raises a bare Error with the driver log
        raise BackendError(
            f"GL program {vertex} + {fragment} failed to build on {ctx.info['GL_RENDERER']}: {exc}"
        ) from exc
