"""UVR's model families as audio-separator 0.47.1 runs them: MDX-Net (ONNX) and VR."""
