"""Core's own behaviour, registered through the same hooks as any third-party plugin."""
