"""The one clock of a bag recording (``clock: header`` or ``log`` in the topics spec), and the error of bag import.

``header``: messages are timed by their header stamps, messages without a header (or with a zero stamp) by the
bag's log time, which is only sound where both clocks agree; a recording whose stamps are on another clock than its
log times (sim time ~1e3 s next to log time ~1.7e9 s), or whose stamped topics disagree with each other, is refused
naming both clocks. ``log``: every topic is timed by when the bag recorded it.
"""

from __future__ import annotations

import numpy as np

from robot_rl.data.bag_spec import BagSpec
from robot_rl.data.errors import DatasetError

CLOCK_AGREEMENT_S = 1.0
"""Header stamps and log times further apart than this (median, s) are on different clocks."""


class BagImportError(DatasetError):
    """A bag that cannot be imported; the message is one line naming the bag (and topic and time, where known)."""


def clock_times(bag: str, spec: BagSpec, types: dict[str, str], log: dict[str, list[int]],
                 head: dict[str, list[int]]) -> tuple[dict[str, list[float]], int]:
    """Each topic's message times in s on the recording's one clock (``spec.clock``), and that clock's time 0."""
    ns = {t: np.asarray(log[t], dtype=np.int64) for t in log}
    if spec.clock == "header":
        ref = clock_offset(head[spec.joint_topic], log[spec.joint_topic])
        for topic in head:
            stamped = np.asarray(head[topic], dtype=np.int64)
            has = stamped >= 0
            offset = clock_offset(head[topic], log[topic])
            if not has.all() and abs(ref) > CLOCK_AGREEMENT_S * 1e9:
                why = "has no header" if not has.any() else f"has {int((~has).sum())} messages with a zero stamp"
                raise BagImportError(
                    f"{bag}: two clocks in one recording: '{spec.joint_topic}' is stamped "
                    f"t={first_time(head[spec.joint_topic])} (header clock) while '{topic}' ({types[topic]}) {why}, so "
                    f"it is timed by the bag's log clock t={first_time(log[topic])}; set 'clock: log' in the "
                    f"topics spec to time every topic by when it was recorded")
            if has.any() and abs(offset - ref) > CLOCK_AGREEMENT_S * 1e9:
                raise BagImportError(
                    f"{bag}: two clocks in one recording: '{spec.joint_topic}' is stamped "
                    f"t={first_time(head[spec.joint_topic])} and '{topic}' t={first_time(head[topic])} "
                    f"({abs(offset - ref) / 1e9:.3g} s apart against the log time); set 'clock: log' in the topics "
                    f"spec to time every topic by when it was recorded")
            ns[topic] = np.where(has, stamped, ns[topic])
    origin = min(int(v.min()) for v in ns.values())
    return {t: ((v - origin) / 1e9).tolist() for t, v in ns.items()}, origin


def clock_offset(head: list[int], log: list[int]) -> float:
    """Median header stamp minus log time (ns) over the stamped messages; 0 where none is stamped."""
    h, lg = np.asarray(head, dtype=np.int64), np.asarray(log, dtype=np.int64)
    has = h >= 0
    return float(np.median(h[has] - lg[has])) if has.any() else 0.0


def first_time(ns: list[int]) -> str:
    """The first valid time of a topic, s since its clock's epoch (e.g. ``1402.500 s``)."""
    first = next((v for v in ns if v >= 0), 0)
    return f"{first / 1e9:.3f} s"
