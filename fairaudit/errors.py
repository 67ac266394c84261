"""User-facing errors.

Every problem caused by the user's input (a bad path, a corrupt checkpoint, an
unknown attribute, too-small groups...) raises a subclass of ``FairauditError``
whose message is one complete sentence that can be shown verbatim in the UI or
printed as the single stderr line of the CLI (exit code 2).
"""


class FairauditError(Exception):
    """Base class for errors caused by user input; the message is user-facing."""


class DatasetError(FairauditError):
    """A dataset could not be found, parsed or validated."""


class ModelLoadError(FairauditError):
    """A model file could not be loaded safely or does not match the dataset."""


class MetricInputError(FairauditError):
    """Labels, predictions or group arrays are inconsistent."""
