"""The engine's own modules: spec → build → run, tasks and their store, executors, the observation of one
task, the flows and the Dataset assembly. Nothing here is for plugins (a test enforces it); the library entry
points are re-exported by :mod:`stochthermo` (``stochthermo.run``, ``stochthermo.simulate``, ...).
"""
