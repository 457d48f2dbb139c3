"""rclpy wiring of ``robot_rl.ros``: subscriptions cache, timers tick, services start and stop."""
