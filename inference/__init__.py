"""The deraining pipeline: a network loaded for deraining (network.py), images restored window by
window (tiling.py), folders of images (folder.py), and the ONNX path (export_onnx.py, onnx_runtime.py).
test.py, evaluations/reproduce.py and the web app are its callers."""
