"""Scaling projection: from the runs a user can make to the cluster they are about to buy or rent.

model.py (maths: compute fit, all-reduce per DDP bucket, overlap, bounds), links.py + links.json
(presets with sources), linktest.py (the all-reduce sweep's record and fit), collectives.py (what each
strategy issues per step), root_inputs.py (what a ROOT offers: Inputs), records.py (reading one run record),
calibrate.py (a ROOT's runs and linktest → the projection document), store.py (projection.json).
Framework-free; docs/projection.md.
"""
