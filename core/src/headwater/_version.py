"""Version of the `headwater` distribution and of the plugin API it offers."""

from typing import Final

#: The distribution version (PEP 440).
__version__ = "1.0.0"

#: The plugin API major version. A plugin targets it by declaring a dependency such as
#: ``headwater>=1.0,<2``; a plugin whose requirement excludes the running core is refused
#: before any of its code is imported.
API_VERSION: Final = 1
