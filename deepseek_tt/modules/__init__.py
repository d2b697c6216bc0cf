"""The DeepSeek-V3 submodules written against ttnn, each a namespace class with the three-stage contract."""
