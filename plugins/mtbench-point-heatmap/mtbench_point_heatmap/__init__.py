"""mtbench-point-heatmap: the ``points`` task for mtbench, end to end, as a plugin.

Everything about point targets lives here, registered through mtbench's hooks (entry points
in ``pyproject.toml``), so the core knows nothing of points:

- :mod:`.task`: the task ``points`` (target schema, how targets move with augmentation, decode, metrics, headline
  ``points/F1``, default loss, table columns);
- :mod:`.sirst`: the SIRST loader (``dataset: sirst``);
- :mod:`.metrics` / :mod:`.mask_metrics`: point-level Pd / FA per image / F1 / Pd-FA AUC
  (registered as ``points/point-level``) and the mask-level BasicIRSTD metrics;
- :mod:`.heatmap`: the heatmap encoding and its decoding;
- :mod:`.losses`: ``points/bce-hard``, ``points/focal-heatmap``, ``points/gaussian-soft``
  (heatmaps) and ``points/soft-iou`` (masks);
- :mod:`.model`: the ``point-heatmap`` architecture;
- :mod:`.acm` / :mod:`.masks`: ``acm``, a pixel-segmentation baseline (ACM-U-Net), and the
  decoding of its mask into component points;
- :mod:`.synthetic`: ``synthetic-points``, generated small-target images (tests, no download).
"""
