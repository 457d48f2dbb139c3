"""A ROS 2 participant without rclpy: ROS 2 messages over Cyclone DDS (the middleware of ``rmw_cyclonedds_cpp``).

It speaks ROS 2's wire conventions: topics ``rt/<name>``, types ``<pkg>::msg::dds_::<Type>_``, plain CDR payloads
and the rclpy QoS profiles, so a process using it talks to another one using it (tests, the loopback robot) and,
where ROS 2 runs with ``RMW_IMPLEMENTATION=rmw_cyclonedds_cpp`` on the same ``ROS_DOMAIN_ID``, to ROS 2 nodes.

- ``msgs``: the IDL structs (JointState, Image, CompressedImage, CameraInfo, the command types, Bool/Empty/String/
  Int64), ``dds_types()`` for ``robot_rl.ros.convert.make_command``;
- ``qos``: ``dds_topic``, the ``SENSOR_DATA`` / ``DEFAULT`` / ``LATCHED`` profiles, ``loopback_config``;
- ``participant.Participant``: a domain participant making readers and writers by ROS topic name;
- ``transport.DdsTransport``: the ``RosTransport`` of ``robot_rl.envs.ros_env.RosEnv``;
- ``echo_robot.EchoRobot``: a stand-in robot (joint states at a rate, commanded positions echoed back, resets);
- ``learning``: the actor/learner link (transitions spooled until acked, latched weights) of ``robot-rl actor`` /
  ``robot-rl learner``.

Needs the ``cyclonedds`` wheel (``pip install 'robot-rl[dds]'``); importing a submodule without it raises one
``ImportError`` line saying so. This package sits under ``robot_rl.ros`` (it uses ``robot_rl.ros.convert``,
``control`` and ``core`` only) and implements ``RosTransport`` structurally, without importing ``robot_rl.envs``.
"""

MISSING = ("robot_rl.ros.dds needs the Eclipse Cyclone DDS Python binding: pip install 'robot-rl[dds]' "
           "(the cyclonedds wheel)")
"""The one-line error when ``cyclonedds`` is not installed."""

SUCCESS_TOPIC = "success"
"""Topic of a robot's ``std_msgs/Bool`` success signal (``robot_rl.envs.sim_robot`` publishes its ground truth there;
``robot-rl actor`` reads it as each step's reward by default)."""
