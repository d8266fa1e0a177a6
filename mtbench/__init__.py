"""mtbench: honest, repeatable benchmarks of multi-task vision models.

Importing this package has no side effects: no plugin is loaded, CUDA is not touched
and no registry is filled. Build a plugin manager with :func:`mtbench.plugins.get_registry`.
"""

__version__ = "0.1.0"
