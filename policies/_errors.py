"""Policy errors: each names the file, the field path and the problem."""

__all__ = [
    "DuplicateServiceError",
    "PolicyDirectoryError",
    "PolicyError",
    "PolicyRuleError",
    "PolicySchemaError",
    "PolicySyntaxError",
]


class PolicyError(Exception):
    """A policy document (or directory) is invalid.

    ``str(error)`` is one line, ``FILE: FIELD: problem`` (``FILE: problem`` when no single
    field is to blame). ``problems`` holds every problem found, one line each, when the error
    stands for several (``load_policies`` stops start-up on the first and counts the rest).
    """

    def __init__(self, file: str, field: str, problem: str,
                 *, problems: tuple[str, ...] = ()) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        self.line = f"{file}: {field}: {problem}" if field else f"{file}: {problem}"
        self.problems = problems or (self.line,)
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        super().__init__(self.line + suffix)


class PolicySyntaxError(PolicyError):
    """The file cannot be read or is not valid TOML."""


class PolicySchemaError(PolicyError):
    """A member is unknown, missing, or of the wrong type or form."""


class PolicyRuleError(PolicyError):
    """Well-formed, but breaks a rule: a field the proof does not carry, a duplicate purpose,
    an unknown Land, a private or unusable key."""


class DuplicateServiceError(PolicyError):
    """Two documents in one directory use the same service id."""


class PolicyDirectoryError(PolicyError):
    """The policy directory does not exist, is not a directory, or holds no documents."""
