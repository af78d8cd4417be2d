"""tokenmill host agent: runs next to the inference engine on a GPU host.

Installed alone on hosts, so it imports neither backend/ nor console/.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tokenmill")
except PackageNotFoundError:
    __version__ = "0.0.0+unknown"
