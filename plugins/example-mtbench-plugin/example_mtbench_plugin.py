"""A minimal mtbench plugin: registers the strategy ``heavy-det`` (equal, detection loss x2)."""

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.equal import Equal


def heavy_det(det_weight: float = 2.0) -> Equal:
    """Joint training with the detection loss weighted ``det_weight`` (others 1)."""
    return Equal(weights={"det": det_weight})


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "heavy-det", heavy_det, "equal, detection loss x2 (example plugin)")]
