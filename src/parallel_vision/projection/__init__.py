"""Scaling projection: from the runs a user can make to the cluster they are about to buy or rent.

model.py (maths: compute fit, all-reduce per DDP bucket, overlap, bounds), links.py + links.json
(presets with sources), linktest.py (the all-reduce sweep's record and fit), calibrate.py (a ROOT's
runs and linktest → projection.json). Framework-free; docs/projection.md.
"""
