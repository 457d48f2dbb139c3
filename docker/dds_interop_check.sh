#!/usr/bin/env bash
# robot_rl.ros.dds against real ROS 2 tools over rmw_cyclonedds_cpp, inside the ROS image (needs Docker and the
# ros:jazzy-ros-base image; not run on the development machines, which have neither):
#   docker build -f docker/ros.Dockerfile -t robot-rl-ros . && docker run --rm robot-rl-ros bash /ws/dds_interop_check.sh
# Checks: ros2 topic echo reads the EchoRobot's JointState and its latched e-stop (published before the echo started);
# ros2 topic pub's Float64MultiArray command moves the EchoRobot; DdsTransport receives ros2 topic pub's JointState.
set -euo pipefail
export RMW_IMPLEMENTATION=rmw_cyclonedds_cpp ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
CYCLONEDDS_URI=$(python3 -c 'from robot_rl.ros.dds.qos import loopback_config; print(loopback_config())')
export CYCLONEDDS_URI
work=$(mktemp -d)
python3 -m robot_rl.ros.dds.echo_robot --joints j1,j2 --start 0.5,-0.5 --rate 20 --estop true \
    --stats "$work/stats.json" > "$work/robot.log" 2>&1 &
robot=$!
trap 'kill "$robot" 2>/dev/null || true; kill "${pub:-}" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q ready "$work/robot.log" && break; sleep 0.2; done
grep -q ready "$work/robot.log" || { echo "echo robot did not start:"; cat "$work/robot.log"; exit 1; }

echo "[1/4] ros2 topic echo /joint_states (published by robot_rl.ros.dds)"
timeout 30 ros2 topic echo --once /joint_states sensor_msgs/msg/JointState > "$work/js.txt"
grep -qx -- "- j1" "$work/js.txt" && grep -qx -- "- 0.5" "$work/js.txt" || { cat "$work/js.txt"; exit 1; }

echo "[2/4] ros2 topic echo /estop, transient local, started after the e-stop was published"
timeout 30 ros2 topic echo --once --qos-durability transient_local --qos-reliability reliable /estop \
    std_msgs/msg/Bool > "$work/estop.txt"
grep -qx "data: true" "$work/estop.txt" || { cat "$work/estop.txt"; exit 1; }

echo "[3/4] ros2 topic pub /command (Float64MultiArray) -> the robot's joint states"
timeout 30 ros2 topic pub --once -w 1 /command std_msgs/msg/Float64MultiArray "{data: [0.25, -0.125]}" > /dev/null
sleep 1
timeout 30 ros2 topic echo --once /joint_states sensor_msgs/msg/JointState > "$work/js2.txt"
grep -qx -- "- 0.25" "$work/js2.txt" || { cat "$work/js2.txt"; exit 1; }

echo "[4/4] ros2 topic pub /ros_side/joint_states -> DdsTransport"
ros2 topic pub -r 20 /ros_side/joint_states sensor_msgs/msg/JointState "{name: [j1], position: [0.75]}" \
    > /dev/null &
pub=$!
timeout 60 python3 - <<'PY'
import time

from robot_rl.ros.dds.transport import DdsTopics, DdsTransport

t = DdsTransport(DdsTopics(joint_states="ros_side/joint_states", reset=None, estop=None), "float64_array")
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    got = [m for k, m in t.spin(0.2) if k == "joint_states"]
    if got:
        assert list(got[-1].name) == ["j1"] and list(got[-1].position) == [0.75], got[-1]
        break
else:
    raise SystemExit("DdsTransport received nothing from ros2 topic pub in 30 s")
t.close()
PY
kill -TERM "$robot"; wait "$robot" || true
python3 -c "import json, sys; s = json.load(open(sys.argv[1])); assert s['last_command'] == [0.25, -0.125], s" \
    "$work/stats.json"
echo "dds interop: ok (rmw_cyclonedds_cpp, ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
