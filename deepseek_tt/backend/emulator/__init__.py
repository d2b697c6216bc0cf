"""Torch emulator of the ttnn API subset that the DeepSeek-V3 model uses (DESIGN.md section 2)."""
