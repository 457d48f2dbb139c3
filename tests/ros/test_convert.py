import io

import numpy as np
import pytest
from PIL import Image as PILImage

from robot_rl.ros import (
    ConversionError,
    camera_info_to_intrinsics,
    command_to_array,
    compressed_image_to_array,
    float64_array_to_numpy,
    image_to_array,
    joint_state_to_array,
    make_command,
    rosbags_types,
    stamp_to_sec,
)
from tests.ros import TS, T, header, image, joint_state


def roundtrip(msg):
    """Through CDR bytes: proves the message has the real field layout of its ROS type."""
    return TS.deserialize_cdr(TS.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def test_joint_state_reordered_by_name():
    msg = roundtrip(joint_state(12.25, [0.1, 0.2, 0.3], names=("a", "elbow", "shoulder")))
    assert np.allclose(joint_state_to_array(msg, ("shoulder", "elbow")), [0.3, 0.2])
    assert stamp_to_sec(msg) == pytest.approx(12.25)
    with pytest.raises(ConversionError, match="lacks joints"):
        joint_state_to_array(msg, ("wrist",))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_image(encoding):
    msg = image(1.0, h=4, w=6, encoding=encoding)
    c = 1 if encoding == "mono8" else 3
    data = np.arange(4 * 6 * c, dtype=np.uint8)
    msg.data = data
    out = image_to_array(roundtrip(msg))
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    ref = data.reshape(4, 6, c)
    want = {"rgb8": ref, "bgr8": ref[..., ::-1], "mono8": np.repeat(ref, 3, 2)}[encoding]
    assert np.array_equal(out, want)


def test_compressed_image_and_camera_info():
    buf = io.BytesIO()
    PILImage.fromarray(np.full((5, 7, 3), 200, np.uint8)).save(buf, format="png")
    msg = T["sensor_msgs/msg/CompressedImage"](header=header(1.0), format="png",
                                              data=np.frombuffer(buf.getvalue(), np.uint8))
    out = compressed_image_to_array(roundtrip(msg))
    assert out.shape == (5, 7, 3) and int(out[0, 0, 0]) == 200
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    k = np.array([500.0, 0, 320, 0, 500, 240, 0, 0, 1])
    info = T["sensor_msgs/msg/CameraInfo"](
        header=header(1.0), height=480, width=640, distortion_model="plumb_bob", d=np.zeros(5), k=k,
        r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0, roi=roi)
    intr = camera_info_to_intrinsics(roundtrip(info))
    assert intr.k[0, 0] == 500 and intr.width == 640 and intr.d.shape == (5,)


@pytest.mark.parametrize("kind,values", [("joint_trajectory", [0.1, -0.2]), ("float64_array", [0.1, -0.2]),
                                         ("twist", [0.1, 0.0, 0.0, 0.0, 0.0, 0.3])])
def test_commands_roundtrip(kind, values):
    msg = make_command(rosbags_types(TS), kind, np.array(values), ("shoulder", "elbow"), stamp=3.5,
                       time_from_start=0.1)
    back = roundtrip(msg)
    assert np.allclose(command_to_array(back, kind, ("shoulder", "elbow") if kind != "twist" else ()), values)
    if kind == "float64_array":
        assert np.allclose(float64_array_to_numpy(back), values)
    else:
        assert stamp_to_sec(back) == pytest.approx(3.5)


def test_command_refuses_nan():
    with pytest.raises(ConversionError, match="not finite"):
        make_command(rosbags_types(TS), "float64_array", np.array([np.nan]))
