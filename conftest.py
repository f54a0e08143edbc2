"""Repository-wide pytest set-up: one fixture module per external service."""

pytest_plugins = [
    "tests.fix_services",
    "tests.fix_postgres",
    "tests.fix_http",
    "tests.fix_azurite",
    "tests.fix_oidc",
    "tests.fix_engines",
]
