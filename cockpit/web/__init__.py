"""The citizen web view of the Datenschutzcockpit (HTML, German and English). See README.md."""

from cockpit.web.core import WebView

__all__ = ["WebView"]
