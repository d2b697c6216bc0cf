"""The emulator's ops, one module per family; ``emulator/__init__.py`` exports each module's ``__all__``
as ``ttnn.<name>`` and its ``TRANSFORMER_OPS`` / ``EXPERIMENTAL_OPS`` into ``ttnn.transformer`` /
``ttnn.experimental``. Modules starting with ``_`` are helpers."""
