"""Offline multi-agent learning: configs, critics, agents, the trainer, evaluation, results.

Not the mean-flow maths (``flows``) nor the environments (``envs``) or data (``data``).
"""
