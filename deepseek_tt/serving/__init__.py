"""Serving DeepSeek-V3 on TT-NN: a continuous-batching engine, an OpenAI-compatible HTTP server, and the
vLLM Tenstorrent-backend model adapter."""
