"""Success classifier, P(task achieved | observation): the network and the success signals (``classifier.py``), its
training examples (``examples.py``), its training (``training.py``) and per-frame success labels (``labels.py``)."""

from robot_rl.rewards.success.classifier import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    LABELS_FROM,
    METRICS_FILE,
    MODEL_FILE,
    PLOT_FILE,
    ClassifierSuccess,
    ConstantSuccess,
    FlippedSuccess,
    SuccessClassifier,
    SuccessConfig,
)
from robot_rl.rewards.success.examples import SuccessExamples, collect_examples
from robot_rl.rewards.success.labels import SuccessError
from robot_rl.rewards.success.training import calibration_bins, fit_classifier, plot_calibration, train_success

__all__ = [
    "CONFIG_FILE", "FORMAT", "FORMAT_VERSION", "LABELS_FROM", "METRICS_FILE", "MODEL_FILE", "PLOT_FILE",
    "ClassifierSuccess", "ConstantSuccess", "FlippedSuccess", "SuccessClassifier", "SuccessConfig", "SuccessError",
    "SuccessExamples", "calibration_bins", "collect_examples", "fit_classifier", "plot_calibration", "train_success",
]
