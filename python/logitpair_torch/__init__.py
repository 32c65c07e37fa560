"""PyTorch reference implementation of the logitpair models and a minimal
numpy-only safetensors reader/writer used to produce golden fixtures for the
Go implementation."""
