"""Root pytest configuration: registers the suite's fixture plugins (options, devices, models, results, --no-skips)."""

pytest_plugins = [
    "fixtures.options",
    "fixtures.devices",
    "fixtures.models",
    "fixtures.results",
    "fixtures.strict",
]
