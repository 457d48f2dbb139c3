"""Success classifier, P(task achieved | observation): the network and the success signals (``classifier.py``), its
training examples (``examples.py``), its training (``training.py``), per-frame success labels (``labels.py``) and
teacher-verified claims online (``verify.py``).
The names below are the package's public face."""

# Two lines from classifier.py rather than one wrapped list:
# isort: off
from robot_rl.rewards.success.classifier import MODEL_FILE, PLOT_FILE, SuccessClassifier, SuccessConfig  # noqa: F401
from robot_rl.rewards.success.classifier import ClassifierSuccess, ConstantSuccess, FlippedSuccess  # noqa: F401
# isort: on
from robot_rl.rewards.success.examples import collect_examples  # noqa: F401
from robot_rl.rewards.success.labels import SuccessError  # noqa: F401
from robot_rl.rewards.success.training import train_success  # noqa: F401
from robot_rl.rewards.success.verify import VerifiedSuccess, VerifyConfig  # noqa: F401
