"""Torch side: the SPAN network, forgery synthesis, training and ONNX export."""
