"""The improvement loop's training runs: which conversations a run learns from and holds out (``selectors``),
starting, cancelling and recording runs (``services``), which training workers are alive (``liveness``) and the
sweep that fails the runs of a dead one (``sweep``). The training itself is the worker's
(``chat/worker/training.py`` with ``inference.training`` and ``inference.evaluation``); docs/improvement-loop.md
tells the whole loop.
"""
