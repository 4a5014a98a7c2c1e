"""fractalsync_tracking: beat/meter tracking (online and offline), state bus, metrics and CLIs.

May use fractalsync_dsp and fractalsync_models.
"""
