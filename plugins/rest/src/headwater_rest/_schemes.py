"""
The auth schemes this plugin provides, named once: the entry point (``hooks``) registers
them and the config (``_config``) tells them from another plugin's scheme. Neither
imports the other: the config does not pull in the plugin machinery (pluggy, headwater's
registry) that a plain read never uses, and the entry point stays free of pydantic.
"""

from __future__ import annotations

#: The auth schemes this plugin provides (the factories live in ``headwater_rest._auth``).
AUTH_SCHEMES = (
    "none",
    "bearer",
    "api_key",
    "basic",
    "oauth2_client_credentials",
    "oauth2_refresh_token",
)
