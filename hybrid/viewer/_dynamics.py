"""Reading and changing a body's mass and friction: thin names over :class:`physics.PhysicsWorld`."""

from __future__ import annotations

from physics.world import PhysicsWorld

__all__ = ["BodyDynamics", "body_dynamics", "set_body_dynamics"]

BodyDynamics = tuple[float, float, float]  # (mass kg, 0 for static; friction; restitution)


def body_dynamics(world: PhysicsWorld, name: str) -> BodyDynamics:
    """``(mass, friction, restitution)`` of body ``name`` (mass 0 for a static body)."""
    return world.dynamics(name)


def set_body_dynamics(world: PhysicsWorld, name: str, *, mass: float | None = None,
                      friction: float | None = None) -> None:  # fmt: skip
    """Set the mass (kg, dynamic bodies only) and/or the friction coefficient of body ``name``."""
    world.set_dynamics(name, mass=mass, friction=friction)
