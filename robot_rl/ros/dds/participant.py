"""``Participant``: one DDS domain participant that makes readers and writers by ROS 2 topic name and type."""

from __future__ import annotations

import os
import time
from typing import Any

from robot_rl.ros.dds import MISSING
from robot_rl.ros.dds.msgs import ros_type_name
from robot_rl.ros.dds.qos import DEFAULT, QosProfile, dds_topic

try:
    from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
    from cyclonedds.domain import Domain, DomainParticipant
    from cyclonedds.internal import InvalidSample
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
except ImportError:  # pragma: no cover
    raise ImportError(MISSING) from None


def ros_domain_id(domain_id: int | None = None) -> int:
    """``domain_id``, else ``ROS_DOMAIN_ID`` (as ROS 2), else 0; one-line ``ValueError`` outside 0..232."""
    if domain_id is None:
        raw = os.environ.get("ROS_DOMAIN_ID", "0") or "0"
        try:
            domain_id = int(raw)
        except ValueError:
            raise ValueError(f"ROS_DOMAIN_ID='{raw}' is not an integer") from None
    if not 0 <= domain_id <= 232:
        raise ValueError(f"DDS domain id {domain_id} is outside 0..232 (the range Cyclone DDS maps to UDP ports)")
    return domain_id


class Participant:
    """A DDS participant on ``domain_id`` (default ``ROS_DOMAIN_ID``) with ``config`` (a Cyclone DDS XML string;
    ``None``: ``CYCLONEDDS_URI`` or Cyclone's defaults). Topics are ROS 2 names (``joint_states``), turned into
    ``rt/`` names under ``namespace``."""

    def __init__(self, domain_id: int | None = None, config: str | None = None, namespace: str = ""):
        self.domain_id = ros_domain_id(domain_id)
        self.namespace = namespace
        # a Domain with an explicit config must exist before the participant joins it, and live as long
        self._domain = Domain(self.domain_id, config) if config is not None else None
        self.dp: Any = DomainParticipant(self.domain_id)
        self._topics: dict[str, tuple[Any, type[Any]]] = {}
        self.waitset = WaitSet(self.dp)
        self._readers: list[Any] = []

    def topic(self, name: str, cls: type[Any]) -> Any:
        """The DDS topic of ROS topic ``name`` carrying ``cls``; one-line ``ValueError`` if this participant already
        uses that topic with another type."""
        dds_name = dds_topic(name, self.namespace)
        if dds_name in self._topics:
            topic, known = self._topics[dds_name]
            if known is not cls:
                raise ValueError(f"topic '{dds_name}' is already {ros_type_name(known)}, not {ros_type_name(cls)}")
            return topic
        topic = Topic(self.dp, dds_name, cls)
        self._topics[dds_name] = (topic, cls)
        return topic

    def writer(self, name: str, cls: type[Any], qos: QosProfile = DEFAULT) -> Any:
        return DataWriter(self.dp, self.topic(name, cls), qos=qos.to_cyclone())

    def reader(self, name: str, cls: type[Any], qos: QosProfile = DEFAULT) -> Any:
        """A reader whose new samples also wake :meth:`wait`."""
        reader = DataReader(self.dp, self.topic(name, cls), qos=qos.to_cyclone())
        condition = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        self.waitset.attach(condition)
        self._readers.append((reader, condition))
        return reader

    def wait(self, timeout_s: float) -> bool:
        """Block until any reader of this participant has a new sample (True) or ``timeout_s`` passes (False)."""
        return self.waitset.wait(max(int(timeout_s * 1e9), 0)) > 0

    @staticmethod
    def take(reader: Any, n: int = 256) -> list[Any]:
        """Up to ``n`` new samples of ``reader``, without the invalid ones (a writer's unregister/dispose)."""
        return [m for m in reader.take(N=n) if not isinstance(m, InvalidSample)]

    @staticmethod
    def wait_for_readers(writer: Any, timeout_s: float, what: str) -> None:
        """Block until ``writer`` has matched a reader (discovery done), else one-line ``TimeoutError``."""
        deadline = time.monotonic() + timeout_s
        while not writer.get_matched_subscriptions():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscriber for {what} within {timeout_s} s")
            time.sleep(0.01)

    def close(self) -> None:
        """Delete the participant and everything it made (readers, writers, topics); idempotent."""
        for _, condition in self._readers:
            self.waitset.detach(condition)
        self._readers.clear()
        self._topics.clear()
        if getattr(self, "dp", None) is not None:
            self.dp.__del__()  # dds_delete: recursive, releases the UDP ports now rather than at GC
            self.dp = None
