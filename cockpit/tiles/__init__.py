"""The transfer log as C2SP tlog-tiles: read from the stored tree (``reader``), served under
``/log/`` (``http``) and written to a folder any web server can serve (``publish``)."""

from cockpit.tiles.http import create_tiles_router
from cockpit.tiles.publish import PublishError, PublishReport, publish
from cockpit.tiles.reader import BundleShreddedError, EntryTooLongError, LogTiles

__all__ = ["BundleShreddedError", "EntryTooLongError", "LogTiles", "PublishError",
           "PublishReport", "create_tiles_router", "publish"]
