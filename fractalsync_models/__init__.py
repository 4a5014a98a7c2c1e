"""fractalsync_models: the model contract, ONNX wrappers and the BeatNet converter.

Depends on no other FractalSync package.
"""
