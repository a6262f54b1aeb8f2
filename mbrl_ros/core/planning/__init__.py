"""Planning without ROS: the model-predictive controller around a planner, PDDM's
exploration policy, and the control loop (realtime or lockstep) with its inputs and
outputs. The planners themselves are in ``core.planners``."""
