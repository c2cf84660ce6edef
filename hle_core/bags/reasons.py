"""Why a frame of a bag was not evaluated or not scored: one line per reason, shown in the report.

The keys are the ``rejected_by_reason`` and ``gt_status`` values of bag evaluation
(:func:`~hle_core.bags.evaluate.evaluate_bag`, :func:`~hle_core.bags.score.score_recorded_bag`); the report
(:mod:`hle_core.bags.report`) explains them with these texts.
"""
from __future__ import annotations

__all__ = ["REASON_TEXT"]

#: Shown in the report, one line per frame status / reason.
REASON_TEXT = {
    "unreadable": "declared in the bag's index but not readable (damaged bag, see read_error)",
    "deserialize": "message bytes do not deserialise",
    "msgtype": "not a sensor_msgs/msg/Image or CompressedImage",
    "encoding": "image encoding not accepted (rgb8, bgr8, rgba8, bgra8, mono8)",
    "empty": "image has no pixels",
    "step": "row step shorter than a row",
    "size": "data length differs from step x height",
    "too_large": "more pixels than max_pixels (the image, or the padded / resized network input made from it)",
    "aspect": "long side more than 16 times the short side (network input mostly padding)",
    "decode": "compressed image does not decode",
    "pipeline_error": "the pipeline raised",
    "no_gt_topic": "no ground-truth topic given",
    "no_gt": "no ground-truth message with the image's header stamp",
    "gt_deserialize": "ground-truth message bytes do not deserialise",
    "gt_encoding": "ground truth is not a readable 32SC1 image",
    "gt_shape": "ground truth size differs from the image",
    "gt_labels": "ground truth holds unknown categories or out-of-range ids",
    "not_received": "no node output with the image's header stamp (dropped or rejected by the node)",
    "bad_prediction": "the recorded node output is unreadable or its label image has the wrong size",
}
