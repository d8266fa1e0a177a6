"""Training strategies: how tasks are trained together (joint) or one after another (sequential)."""
