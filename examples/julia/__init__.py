"""The live Julia visual's own parts: parameters, renderers (GL and numba), analytic controller,
sync measurement, video output. Used by ``examples/live_julia.py``; tested like the library."""
