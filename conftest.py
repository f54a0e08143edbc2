"""Repository-wide pytest set-up: one fixture module per external service."""

pytest_plugins = [
    "tests.fix_services",
]
