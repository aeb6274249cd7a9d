"""Deployment: ONNX export of the multi-task model and its stage pieces, ONNX Runtime execution."""
