"""Executors: where cells run, registered through ``mtbench_register_executors``: ``local``
runs them in-process, one after another; ``ray`` one Ray task per cell."""
