
# The ModernGL compositor (render.gl): importing it does not import moderngl; a context or renderer does.
from render import gl  # noqa: E402

__all__ = [*globals().get("__all__", []), "gl"]
