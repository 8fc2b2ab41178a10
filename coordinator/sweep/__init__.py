"""`coord sweep`: many runs of one benchmark over inventories and parameters (docs/sweeps.md).

plan (the plan file's model and its cells, pure), estimate (pure), index (the sweep's index
document, pure), ramp (when an open-loop ramp stops, pure), analysis (the sweep report's
figures, pure), load (read and check a plan and every cell's inventory), executor (run the
cells, one fleet per inventory), table (the terminal report).
"""
