"""ROS-free learning and planning core: dynamics models, datasets, planners (torch/numpy)."""
