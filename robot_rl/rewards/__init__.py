"""Rewards without hand-labeling: preference queries over dataset segments, labelers (scripted teacher, VLM,
human), a resumable label store, a Bradley-Terry reward model, CLIP rewards, and relabeling of datasets."""

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

__all__ = ["CANT_TELL", "EQUAL", "FIRST", "SECOND", "Label", "Labeler", "Query", "Segment", "SegmentRef", "query_key"]
