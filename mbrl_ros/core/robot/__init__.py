"""The robot as the stack sees it, without MuJoCo: joint names, command limits, the pose each
task starts from, the action map, the kinematics a task needs (numpy; torch only where a
task's kinematics is built)."""
