"""Reading and changing a body's mass and friction in a running :class:`physics.PhysicsWorld`.

``PhysicsWorld`` has no public setter for these yet; this thin adapter keeps its bookkeeping
(mass and principal inertia used by ``push``, friction) consistent with PyBullet. The inertia is
scaled with the mass (same shape, uniform density). Replace with a ``PhysicsWorld`` method once
one exists.
"""

from __future__ import annotations

import math

from physics.world import PhysicsWorld
from scenes.errors import PhysicsError, ShapeError

__all__ = ["BodyDynamics", "body_dynamics", "set_body_dynamics"]

BodyDynamics = tuple[float, float, float]  # (mass kg, 0 for static; friction; restitution)


def body_dynamics(world: PhysicsWorld, name: str) -> BodyDynamics:
    """``(mass, friction, restitution)`` of body ``name`` (mass 0 for a static body)."""
    b = world._body(name)
    return (b.mass, b.friction, b.restitution)


def set_body_dynamics(world: PhysicsWorld, name: str, *, mass: float | None = None,
                      friction: float | None = None) -> None:  # fmt: skip
    """Set the mass (kg, dynamic bodies only) and/or the friction coefficient of body ``name``."""
    b = world._body(name)
    p = world._p
    kw = {}
    if mass is not None:
        if not (math.isfinite(mass) and mass > 0):
            raise ShapeError(f"mass of {name!r}: expected a finite number of kg > 0, got {mass!r}")
        if b.static:
            raise PhysicsError(f"object {name!r} is static; its mass cannot change")
        if mass != b.mass:
            b.inertia = b.inertia * (mass / b.mass)
            b.mass = float(mass)
            kw.update(mass=b.mass, localInertiaDiagonal=b.inertia.tolist())
    if friction is not None:
        if not (math.isfinite(friction) and friction >= 0):
            raise ShapeError(f"friction of {name!r}: expected a finite number >= 0, got {friction!r}")
        b.friction = float(friction)
        kw.update(lateralFriction=b.friction)
    if kw:
        world._call(p.changeDynamics, b.uid, -1, **kw)
        world._wake(b)
