"""Run-time plumbing: budgets, devices, seeding, timing and provenance records.

Not algorithms: every other layer uses these.
"""
