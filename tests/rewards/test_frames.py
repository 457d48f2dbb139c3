"""One default-camera rule and one frame source (stored frame at the size, else rendered from the sim state)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from robot_rl.cli.collect_cmd import collect_camera
from robot_rl.cli.inspect_cmd import _frames
from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.data import Dataset, DatasetError, DatasetWriter, Episode
from robot_rl.envs.task_cards import default_camera, load_task_card
from robot_rl.rewards.base import Segment, SegmentRef
from robot_rl.rewards.frames import FrameSource
from robot_rl.rl.image_data import DatasetFrames, step_frames

SIZE = 8
CAMERAS = ("corner", "corner4", "topview")
CARD_TASK = "metaworld/soccer-v3"
"""A task whose card shows ``corner4``, not the env's first camera (``corner``)."""


def spec(name: str = CARD_TASK, cameras: tuple[str, ...] = CAMERAS) -> EnvSpec:
    return EnvSpec(name=name, observations={"state": ArraySpec((1,))},
                   action=ActionSpec(1, "ee_delta", scale=(1.0,), offset=(0.0,)), max_episode_steps=10,
                   sim_state_dim=1, cameras=cameras)


def draw(sim_states: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 ``[K, size, size, 3]``: a flat frame whose brightness is the sim state (what the fake renders)."""
    return np.broadcast_to(sim_states[:, :1, None, None].astype(np.uint8), (len(sim_states), size, size, 3)).copy()


def write(path: Path, stored: tuple[str, ...], every: int = 1, sim_states: bool = False, size: int = SIZE,
          length: int = 6, episodes: int = 2, env: EnvSpec | None = None) -> Path:
    """Episodes whose sim state at step t is 10 * episode + t + 1; stored frames (every ``every``th step) are
    ``draw`` of it plus 100, so a stored frame and a rendered one differ."""
    with DatasetWriter(path, env or spec(), source="test", image_compression=None) as w:
        for e in range(episodes):
            states = np.zeros((length, 1), np.float32)
            sim = (10 * e + np.arange(length) + 1.0)[:, None]
            dones = np.zeros(length, bool)
            dones[-1] = True
            images = {cam: draw(sim[::every], size) + 100 for cam in stored}
            w.add_episode(Episode(states=states, actions=np.zeros((length, 1), np.float32),
                                  rewards=np.zeros(length, np.float32), next_states=states,
                                  terminals=np.zeros(length, bool), dones=dones, images=images, image_every=every,
                                  sim_states=sim if sim_states else None))
    return path


class FakeRenderFrames(DatasetFrames):
    """The real frame source with the simulator replaced by ``draw``."""

    def render(self, sim_states: np.ndarray) -> np.ndarray:
        self.rendered += len(sim_states)
        return draw(np.asarray(sim_states), self.size[0])


def cameras_of_the_four_callers(path: Path) -> list[str]:
    """The camera that labelers / reward models, image training, collect --resume and inspect each pick."""
    with Dataset(path) as ds:
        labelers = FrameSource(ds, size=(SIZE, SIZE)).camera
        try:
            training = step_frames(ds).camera
        except DatasetError as e:  # nothing stored and no sim state: the error names the camera it needed
            training = re.search(r"camera '(\w+)'", str(e)).group(1)
        name = ds.episode_names[0]
        how = _frames(ds, name, ds.load_episode(name, images=True), 3)[2]
        inspect = re.search(r"camera '(\w+)'", how).group(1)
        env = ds.spec
    collect = collect_camera(None, env, path, resume=True)
    return [labelers, training, collect, inspect]


@pytest.mark.parametrize(("stored", "want"), [
    ((), "corner4"),                     # none stored: the task card's camera
    (("topview",), "topview"),           # the only stored one
    (("corner", "topview"), "corner"),   # several, not the card's: the first in the env's order
    (("topview", "corner4"), "corner4"),  # several, the card's among them
])
def test_the_four_callers_pick_the_same_camera(tmp_path, stored, want):
    assert load_task_card(CARD_TASK).camera == "corner4"
    path = write(tmp_path / "d.h5", stored)
    assert cameras_of_the_four_callers(path) == [want] * 4


def test_default_camera_without_a_card_or_any_camera():
    assert default_camera(spec("toy/none-v0")) == "corner"  # no card: the env's first camera
    assert default_camera(spec("toy/none-v0", ()), ["b", "a"]) == "a"
    with pytest.raises(ValueError, match="names no camera"):
        default_camera(spec("toy/none-v0", ()))


def test_stored_frames_where_present_at_the_size_else_rendered(tmp_path, monkeypatch):
    path = write(tmp_path / "d.h5", ("corner",), every=2, sim_states=True)
    with Dataset(path) as ds:
        sim = ds.load_episode("demo_1").sim_states
        source = FakeRenderFrames(ds, size=(SIZE, SIZE))
        got = source.frames_at("demo_1", np.arange(6), sim)
        assert source.camera == "corner" and source.rendered == 3
        np.testing.assert_array_equal(got[::2], draw(sim[::2]) + 100)  # stored (even steps)
        np.testing.assert_array_equal(got[1::2], draw(sim[1::2]))  # rendered (odd steps)
        np.testing.assert_array_equal(source.frames_at("demo_1", [1, 3], None), got[[1, 3]])  # cached renders
        assert source.rendered == 3
        other = FakeRenderFrames(ds, size=(SIZE * 2, SIZE * 2))  # no frame stored at this size: all rendered
        np.testing.assert_array_equal(other.frames_at("demo_1", np.arange(6), sim), draw(sim, SIZE * 2))
        assert other.rendered == 6
        # image training's every-step frames come from the same source
        monkeypatch.setattr(DatasetFrames, "render", FakeRenderFrames.render)
        frames = step_frames(ds, image_size=SIZE)
        assert frames.rendered == 6 and frames.camera == "corner"
        np.testing.assert_array_equal(frames.frames[6:], got)


def test_segments_read_the_same_frames(tmp_path):
    path = write(tmp_path / "d.h5", ("corner",), every=1)
    with Dataset(path) as ds:
        ep = ds.load_episode("demo_0", images=True)
        source = FrameSource(ds, size=(SIZE, SIZE))
        segment = Segment(SegmentRef("demo_0", 2, 3), ep.states[2:5], ep.actions[2:5], ep.rewards[2:5], None)
        np.testing.assert_array_equal(source.frames(segment), ep.images["corner"][2:5])
        np.testing.assert_array_equal(source.last_frame(segment), ep.images["corner"][4])
        np.testing.assert_array_equal(source.episode_frames("demo_0", ep), ep.images["corner"])
        assert source.identity() == {"camera": "corner", "size": [SIZE, SIZE]} and source.rendered == 0


def test_a_missing_frame_without_a_sim_state_says_what(tmp_path):
    path = write(tmp_path / "d.h5", ("corner",), every=2)
    with Dataset(path) as ds:
        source = FrameSource(ds, size=(SIZE, SIZE))
        ep = ds.load_episode("demo_0")
        segment = Segment(SegmentRef("demo_0", 0, 4), ep.states[:4], ep.actions[:4], ep.rewards[:4], None)
        with pytest.raises(DatasetError, match=r"demo_0: needs a 8x8 frame of camera 'corner' at step 1; the "
                                               r"episode stores only every 2th frame and has no sim_state"):
            source.frames(segment)
        with pytest.raises(ValueError, match="unknown camera 'nope'"):
            FrameSource(ds, "nope")
