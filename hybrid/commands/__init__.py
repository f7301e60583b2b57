"""Sub-commands of the ``hybrid`` CLI; every module with ``register(app)`` is added automatically."""
