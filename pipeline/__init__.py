"""capaudit: batch capability audit for the Sinch Conversation API."""

from importlib import metadata

try:
    __version__ = metadata.version("capaudit")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
