"""Runtime side: decoding, the ONNX Runtime engine, HTTP service, rendering and evaluation. Never imports torch."""
