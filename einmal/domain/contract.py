"""Rules broker, cockpit and policies share, each written once: the components import them
from here and never from each other."""

__all__ = ["CHANNEL_AUDIENCE", "MAX_CONSENT_DAYS", "PURPOSE_PATTERN"]

#: The audience of the broker's channel tokens: the cockpit's transfer-record ingest accepts
#: only tokens naming it (the broker signs them with its ``broker-channel`` key).
CHANNEL_AUDIENCE = "einmal-cockpit-ingest"

#: A consent lasts at most this long (two years, like the transfer log's retention).
MAX_CONSENT_DAYS = 730

#: A purpose id: a lower-case slug of 3-64 letters, digits and '-', e.g. ``elterngeld-antrag``
#: (to be matched whole: ``re.fullmatch`` or anchored).
PURPOSE_PATTERN = r"[a-z0-9][a-z0-9-]{2,63}"
