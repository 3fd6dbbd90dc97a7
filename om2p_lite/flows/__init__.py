"""The mean-flow mathematics: paths, velocities, du/dr estimators, time samplers,
samplers, diffusion and the (stacked) networks they act on.

Not reinforcement learning: nothing here knows of rewards, critics or environments.
"""
