"""Dynamics models without ROS: the ensemble, its normalization, training and evaluation,
safe model files and the checkpoint store, and the retraining step the trainer runs."""
