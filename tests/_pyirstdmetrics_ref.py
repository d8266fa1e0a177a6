"""Reference: pyirstdmetrics 1.0.2 (PyPI; github.com/lartpang/PyIRSTDMetrics), transcribed unchanged.

The mask-level metrics of :mod:`mtbench_point_heatmap.mask_metrics` are tested against this code on the
same inputs. The package itself pins ``numpy<2.0`` (mtbench runs numpy 2), so the classes
the tests use are copied here verbatim (only the imports are joined; the skimage labelling
it relies on is a test dependency): ``divide_func`` (utils.py), ``_BaseHandler``,
``IoUHandler``, ``CMMetrics`` (pixelwise_metrics.py) and
``ProbabilityDetectionAndFalseAlarmRate`` (targetwise_metrics.py).
``tests/test_points_reference.py`` also checks this copy against the installed package
when one is importable.

MIT License, Copyright (c) 2025 lartpang

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
# ruff: noqa
import abc
from typing import Dict

import numpy as np
from skimage import measure

# the different implementation of epsilon (extreme min value) between numpy and matlab
EPS = np.spacing(1)
TYPE = np.float64


def divide_func(numerator, denominator):
    denominator = np.array(denominator, dtype=TYPE)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=TYPE), where=denominator != 0)



class _BaseHandler:
    def __init__(self, *, with_dynamic: bool = False, with_binary: bool = True, sample_based: bool = True):
        """
        Args:
            with_dynamic (bool, optional): Record dynamic results for max/avg/curve versions.
            with_binary (bool, optional): Record binary results for binary version.
            sample_based (bool, optional): Whether to average the metric of each sample or calculate
                the metric of the dataset. Defaults to True.
        """
        self.dynamic_results = [] if with_dynamic else None
        self.sample_based = sample_based
        if with_binary:
            if self.sample_based:
                self.binary_results = []
            else:
                self.binary_results = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
        else:
            self.binary_results = None

    @abc.abstractmethod
    def __call__(self, *args, **kwds):
        pass


class IoUHandler(_BaseHandler):
    """Intersection over Union
    Threat score (TS), critical success index (CSI), Jaccard index

    iou = tp / (tp + fp + fn)
    """

    def __call__(self, tp, fp, tn, fn):
        return divide_func(tp, tp + fp + fn)


class CMMetrics:
    def __init__(self, num_bins=10, threshold=0.5, metric_handlers: dict = None):
        """Metrics based on Confusion Matrix.

        Args:
            metric_handlers (dict, optional): Handlers of different metrics. Defaults to None.
        """
        self.num_bins = num_bins
        self.threshold = threshold
        self._metric_handlers = metric_handlers if metric_handlers else {}

    def add_handler(self, handler_name, metric_handler):
        self._metric_handlers[handler_name] = metric_handler

    @staticmethod
    def get_statistics(binary: np.ndarray, mask: np.ndarray, FG: int, BG: int) -> dict:
        """Calculate the TP, FP, TN and FN based a adaptive threshold.

        Args:
            binary (np.ndarray[bool]): binary image
            mask (np.ndarray[bool]): binary mask
            FG (int): the number of foreground pixels in mask
            BG (int): the number of background pixels in mask

        Returns:
            dict: TP, FP, TN, FN
        """
        TP = np.count_nonzero(binary[mask])
        FP = np.count_nonzero(binary[~mask])
        FN = FG - TP
        TN = BG - FP
        return {"tp": TP, "fp": FP, "tn": TN, "fn": FN}

    def dynamically_binarizing(self, prob: np.ndarray, mask: np.ndarray, FG: int, BG: int) -> dict:
        """Calculate the corresponding TP, FP, TN and FNs when the threshold changes from 0 to 255.

        Args:
            prob (np.ndarray[float]): grayscale prediction with values in 0~1.
            mask (np.ndarray[bool]): binary mask.
            FG (int): the number of foreground pixels in mask
            BG (int): the number of background pixels in mask

        Returns:
            dict: TPs, FPs, TNs, FNs
        """
        bins: np.ndarray = np.linspace(0, 1, self.num_bins)
        tp_hist, _ = np.histogram(prob[mask], bins=bins)  # the last bin is [1, 1+bin]
        fp_hist, _ = np.histogram(prob[~mask], bins=bins)

        tp_w_thrs = np.cumsum(np.flip(tp_hist))  # >= 1, >= (num_bins-1)*bin, ... >= 1*bin, >= 0
        fp_w_thrs = np.cumsum(np.flip(fp_hist))

        TPs = tp_w_thrs
        FPs = fp_w_thrs
        FNs = FG - TPs
        TNs = BG - FPs
        return {"tp": TPs, "fp": FPs, "tn": TNs, "fn": FNs}

    def update(self, prob: np.ndarray, mask: np.ndarray):
        """Statistics the metrics for the pair of prob and mask.

        Args:
            prob (np.ndarray[float]): grayscale prediction with values in 0~1.
            mask (np.ndarray[bool]): binary mask.

        Raises:
            ValueError: Please add your metric handler before using `update()`.
        """
        if not self._metric_handlers:
            raise ValueError("Please add your metric handler before using `update()`.")
        assert prob.shape == mask.shape, (prob.shape, mask.shape)
        assert 0 <= prob.min() <= prob.max() <= 1, (prob.dtype, prob.min(), prob.max())
        assert mask.dtype == bool, mask.dtype

        FG = np.count_nonzero(mask)  # FG=(TPs+FNs)
        BG = mask.size - FG  # BG=(TNs+FPs)

        dynamical_tpfptnfn = None
        binary_tpfptnfn = None
        for handler_name, handler in self._metric_handlers.items():
            if handler.dynamic_results is not None:
                if dynamical_tpfptnfn is None:
                    dynamical_tpfptnfn = self.dynamically_binarizing(prob=prob, mask=mask, FG=FG, BG=BG)
                handler.dynamic_results.append(handler(**dynamical_tpfptnfn))

            if handler.binary_results is not None:
                if binary_tpfptnfn is None:  # `prob > 0.5`: Simulating the effect of the `argmax` function.
                    binary_tpfptnfn = self.get_statistics(binary=prob > self.threshold, mask=mask, FG=FG, BG=BG)
                if handler.sample_based:
                    handler.binary_results.append(handler(**binary_tpfptnfn))
                else:
                    handler.binary_results["tp"] += binary_tpfptnfn["tp"]
                    handler.binary_results["fp"] += binary_tpfptnfn["fp"]
                    handler.binary_results["tn"] += binary_tpfptnfn["tn"]
                    handler.binary_results["fn"] += binary_tpfptnfn["fn"]

    def get(self) -> Dict[str, float]:
        """Return the results of the specific metric names.

        Returns:
            dict: All results corresponding to different metrics.
        """
        results = {}
        for handler_name, handler in self._metric_handlers.items():
            res = {}
            if handler.dynamic_results is not None:
                res["dynamic"] = np.mean(np.array(handler.dynamic_results, dtype=TYPE), axis=0)
            if handler.binary_results is not None:
                if handler.sample_based:
                    res["binary"] = np.mean(np.array(handler.binary_results, dtype=TYPE))
                else:
                    # NOTE: use `np.mean` to simplify output format (`array(123)` -> `123`)
                    res["binary"] = np.mean(handler(**handler.binary_results))
            results[handler_name] = res
        return results


class ProbabilityDetectionAndFalseAlarmRate:
    """Target-wise Probability of Detection (PD) and False Alarm Rate (Fa)"""

    def __init__(self, num_bins=1, distance_threshold=3):
        super().__init__()
        assert distance_threshold > 0, f"distance_threshold={distance_threshold} must be greater than 0."
        assert isinstance(num_bins, int) and num_bins > 0, f"int num_bins={num_bins} must be greater than 0."

        self.distance_threshold = distance_threshold
        if num_bins == 1:
            self.thresholds = np.array([0.5])
        else:
            self.thresholds = np.linspace(0, 1, num_bins, endpoint=False)

        self.tp_objs = np.zeros(shape=num_bins, dtype=int)
        self.fp_objs = np.zeros(shape=num_bins, dtype=int)
        self.fn_objs = np.zeros(shape=num_bins, dtype=int)
        self.fp_area = np.zeros(shape=num_bins, dtype=int)
        self.total_area = 0

    def update(self, prob: np.ndarray, mask: np.ndarray):
        """Update the prob and mask to calculate the target-wise positive detection.

        Args:
            prob (np.ndarray[float]): grayscale prediction with values in 0~1.
            mask (np.ndarray[bool]): binary bin_mask.
        """
        assert prob.shape == mask.shape, (prob.shape, mask.shape)
        assert 0 <= prob.min() <= prob.max() <= 1, (prob.dtype, prob.min(), prob.max())
        assert mask.dtype == bool, mask.dtype
        self.total_area += mask.size

        mask_tgts = measure.regionprops(measure.label(mask.astype(int), connectivity=2))
        num_mask_tgts = len(mask_tgts)

        # >0, >1bin, >2bin, ..., >(num_bins-1)*bin
        for idx_bin, thr in enumerate(self.thresholds):
            bin_prob = prob > thr
            prob_tgts = measure.regionprops(measure.label(bin_prob.astype(int), connectivity=2))
            num_prob_tgts = len(prob_tgts)

            # idx_prob_tgt -> idx_mask_tgt
            matched_status = np.zeros((num_mask_tgts, num_prob_tgts), dtype=bool)
            for idx_mask_tgt, mask_tgt in enumerate(mask_tgts):
                cnt_mask_xy = np.asarray(mask_tgt.centroid)
                for idx_prob_tgt, prob_tgt in enumerate(prob_tgts):
                    if np.any(matched_status[:, idx_prob_tgt]):
                        continue

                    cnt_prob_xy = np.asarray(prob_tgt.centroid)
                    distance = np.linalg.norm(cnt_prob_xy - cnt_mask_xy)
                    if distance < self.distance_threshold:
                        matched_status[idx_mask_tgt, idx_prob_tgt] = True
                        break

            tp_objs = np.count_nonzero(matched_status)
            fp_objs = num_prob_tgts - tp_objs
            fn_objs = num_mask_tgts - tp_objs

            matched_prob_tgt_status = np.count_nonzero(matched_status, axis=0)
            unmatched_pre_tgt_indices = np.where(matched_prob_tgt_status == 0)[0]
            fp_area = sum([prob_tgts[j].area if num_prob_tgts > 0 else 0 for j in unmatched_pre_tgt_indices])

            self.tp_objs[idx_bin] += tp_objs
            self.fp_objs[idx_bin] += fp_objs
            self.fn_objs[idx_bin] += fn_objs
            self.fp_area[idx_bin] += fp_area

    def get(self) -> dict:
        """Return the target-wise metrics: probability of detection and false alarm rate.

        Returns:
            {
                probability_detection (np.ndarray): probability_detection, (N,)
                false_alarm (np.ndarray): false_alarm, (N,)
            }
        """
        probability_detection = divide_func(self.tp_objs, self.tp_objs + self.fn_objs)
        false_alarm = divide_func(self.fp_area, [self.total_area])
        return {"probability_detection": probability_detection, "false_alarm": false_alarm}
