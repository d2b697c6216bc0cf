"""Model and op configuration: mesh shapes, op config dataclasses, dtype policies, run-config merge."""
