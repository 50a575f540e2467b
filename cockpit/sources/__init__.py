"""The source model (issue 15, decision 0034): the cockpit asks the data-holding bodies while
the citizen is logged in and keeps nothing.

* ``documents`` - the source documents (TOML: id, name, kind, group, URL, key), loaded once;
* ``desk`` - ``Desk``: asks the chosen sources in parallel with a deadline, merges, holds the
  answers per web session in memory (``holding``);
* ``logcheck`` - the transparency log as the audit layer: inclusion proofs of reported
  transfers, and the log's transfers no source reported;
* ``model`` - the types the desk and the web view share.
"""

from cockpit.sources.desk import MAX_ENTRIES, Desk
from cockpit.sources.documents import (
    DOCUMENTS_DIR,
    SourceDocumentError,
    SourceSpec,
    load_source_file,
    load_sources,
)
from cockpit.sources.logcheck import LogCheck
from cockpit.sources.model import (
    EntryCheck,
    MergedEntry,
    QueryResult,
    SessionAnswers,
    SourceDesk,
    SourceInfo,
    SourceOutcome,
)

__all__ = ["DOCUMENTS_DIR", "MAX_ENTRIES", "Desk", "EntryCheck", "LogCheck", "MergedEntry",
           "QueryResult", "SessionAnswers", "SourceDesk", "SourceDocumentError", "SourceInfo",
           "SourceOutcome", "SourceSpec", "load_source_file", "load_sources"]
