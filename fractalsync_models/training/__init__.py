"""Training and test tools: synthetic songs with exact ground truth (:mod:`.synth`).

Not runtime API. This package imports nothing itself, so that ``import
fractalsync_models.training.<module>`` costs only what that module needs: ``synth`` uses
numpy/scipy only; modules that need torch (the ``[train]`` extra) import it themselves.
"""
