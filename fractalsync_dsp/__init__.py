"""fractalsync_dsp: audio in/out, resampling, the BeatNet front end and fast micro features.

Depends on no other FractalSync package.
"""
