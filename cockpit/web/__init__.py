"""The citizen web view of the Datenschutzcockpit (HTML, German and English). See README.md."""

from cockpit.web.core import WebView
from cockpit.web.routes import create_web_router

__all__ = ["WebView", "create_web_router"]
