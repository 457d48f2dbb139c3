"""Rewards without hand-labeling: preference queries over dataset segments, labelers (scripted teacher, VLM,
human), a resumable label store, a Bradley-Terry reward model, CLIP rewards, reward code, and relabeling.

```
with Dataset("d.h5") as ds:
    queries = make_queries(ds, sample_pairs(ds, 500, 50))
with LabelStore("d.h5.labels.sqlite") as store:
    result = label_queries(queries, ScriptedTeacher(), store, "d.h5")   # reruns ask only what is new
metrics = train_reward("d.h5", "runs/reward")                           # reward_model.pt, plots, metrics
relabel("d.h5", ModelRewarder("runs/reward"), activate=True)            # reward_labels/reward_model
```

By concept: ``labelers/`` (the labeler registry and the labelers), ``model/`` (reward model), ``clip/``,
``success/`` (success classifier), ``sources.py`` (every reward source, for relabel and fine-tuning, by name),
``relabel.py``, ``codegen/`` (reward-code search). Heavier parts import lazily: ``rewards.model`` (torch networks),
``rewards.clip`` (open_clip), ``rewards.labelers.vlm`` (the LLM client), ``rewards.labelers.human`` (a local web
page).
"""

from robot_rl.rewards.base import (
    CANT_TELL,
    EQUAL,
    FIRST,
    SECOND,
    Label,
    Labeler,
    Query,
    Segment,
    SegmentRef,
    query_key,
)
from robot_rl.rewards.jobs import label_dataset, make_labeler, train_reward
from robot_rl.rewards.labelers.scripted import ScriptedTeacher, TeacherConfig
from robot_rl.rewards.labeling import LabelingResult, label_queries
from robot_rl.rewards.pairs import make_queries, sample_pairs
from robot_rl.rewards.relabel import ModelRewarder, activate_label, active_label, make_rewarder, relabel
from robot_rl.rewards.store import LabelStore, LabelStoreError

__all__ = [
    "CANT_TELL", "EQUAL", "FIRST", "SECOND", "Label", "LabelStore", "LabelStoreError", "Labeler", "LabelingResult",
    "ModelRewarder", "Query", "ScriptedTeacher", "Segment", "SegmentRef", "TeacherConfig", "activate_label",
    "active_label", "label_dataset", "label_queries", "make_labeler", "make_queries", "make_rewarder", "query_key",
    "relabel", "sample_pairs", "train_reward",
]
