"""Errors of the model package; each message says what happened and what to do."""


class OncologyModelError(Exception):
    """Base class of the model package's errors."""


class DataValidationError(OncologyModelError):
    """The training data cannot be used; the message lists the first problems with row numbers."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        detail = "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(message + detail)


class QualityGateFailed(OncologyModelError):
    """The challenger model did not pass the quality gate."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("quality gate failed: " + "; ".join(reasons))


class BundleError(OncologyModelError):
    """A model bundle is missing, incomplete, tampered with or holds types we do not trust."""
