# ROS 2 robot image: ROS 2 Jazzy + robot_rl (pip) + the robot_rl_ros colcon workspace.
#   docker build -f docker/ros.Dockerfile -t robot-rl-ros .
#   docker run --rm -it --net=host -v $PWD/runs:/ws/runs robot-rl-ros \
#       ros2 launch robot_rl_ros policy.launch.py checkpoint:=/ws/runs/<name>
FROM ros:jazzy-ros-base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-colcon-common-extensions \
        ros-jazzy-launch-testing ros-jazzy-launch-testing-ros ros-jazzy-std-srvs ros-jazzy-rmw-cyclonedds-cpp \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /ws
# robot_rl: CPU torch is enough on the robot PC (the policy is a small MLP; see benchmarks/control_latency.md).
# Jazzy's Python is 3.12: pip installs into the system interpreter that rclpy uses.
COPY pyproject.toml README.md constraints.txt ./robot_rl_src/
COPY robot_rl ./robot_rl_src/robot_rl
RUN pip3 install --extra-index-url https://download.pytorch.org/whl/cpu \
        -c ./robot_rl_src/constraints.txt "./robot_rl_src[dds]" pillow
# robot_rl.ros.dds against ros2 topic echo/pub over rmw_cyclonedds_cpp: docker run --rm <image> bash /ws/dds_interop_check.sh
COPY docker/dds_interop_check.sh ./dds_interop_check.sh

COPY ros_ws/src ./ros_ws/src
# No --symlink-install: installing torch pulls setuptools >= 80 into /usr/local, and colcon-core's
# `setup.py develop --editable` then fails ("option --editable not recognized", colcon-core#696).
RUN source /opt/ros/jazzy/setup.bash \
    && cd ros_ws && colcon build --packages-select robot_rl_ros

RUN echo "source /opt/ros/jazzy/setup.bash && source /ws/ros_ws/install/setup.bash" >> /root/.bashrc
ENTRYPOINT ["/bin/bash", "-c", "source /opt/ros/jazzy/setup.bash && source /ws/ros_ws/install/setup.bash && exec \"$@\"", "--"]
CMD ["bash"]
