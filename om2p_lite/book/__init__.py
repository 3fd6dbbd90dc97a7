"""Helpers the chapters use: plots, live widgets, 2-D toys and their trainer, metrics,
benchmark reports.

Not needed to train or evaluate an agent from the command line.
"""
