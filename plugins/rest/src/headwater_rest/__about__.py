"""Version of the ``headwater-rest`` distribution."""

__version__ = "0.1.0"
