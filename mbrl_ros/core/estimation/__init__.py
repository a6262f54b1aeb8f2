"""State estimation without ROS: object filters, the task-state vector, the episode's step
arithmetic and the synchronizer that decides when a step's state is complete."""
