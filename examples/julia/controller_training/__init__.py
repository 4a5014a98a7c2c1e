"""Training the Julia controller model (``contracts/v1.json`` ``models.controller``): corpus
(:mod:`.data`), losses (:mod:`.losses`), network (:mod:`.model`), training and ONNX export
(:mod:`.train`), and the no-render proxy evaluation (:mod:`.proxy`).

Training code only: it imports torch, and nothing torch-free imports this package (the
runtime reads the exported ONNX file).
"""
