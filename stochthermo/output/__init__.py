"""Result files: atomic writes (a temporary file beside the target, then renamed into place) and reading runs
back. The engine's own; read results with :func:`stochthermo.open_run`.
"""
