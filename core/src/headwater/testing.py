"""
Test helpers for connector authors, loaded by pytest through the ``pytest11`` entry point.

Importing this module must stay cheap: every pytest run in an environment with headwater
installed loads it, so heavy imports happen inside the helpers that need them.
"""

from __future__ import annotations
