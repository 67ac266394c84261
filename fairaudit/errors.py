"""User-facing errors.

Every problem caused by the user's input (a bad path, a corrupt checkpoint, an
unknown attribute, too-small groups...) raises a subclass of ``FairauditError``
whose message is one complete sentence that can be shown verbatim in the UI or
printed as the single stderr line of the CLI (exit code 2).
"""


WORKER_TRACEBACK = "\nOriginal Traceback"


class FairauditError(ValueError):
    """Base class for errors caused by user input; the message is user-facing.

    A ``ValueError``, so code written against scikit-learn or fairlearn that catches bad input as
    ``ValueError`` catches fairaudit's too."""

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str) and WORKER_TRACEBACK in args[0]:
            args = (_worker_sentence(args[0]),)
        super().__init__(*args)


def _worker_sentence(text: str) -> str:
    """The original sentence of an error raised in a ``DataLoader`` worker process.

    torch re-raises such an error in the main process as ``type(error)(text)``,
    where ``text`` holds the worker's whole traceback and ends with
    ``module.ErrorClass: <sentence>``.
    """
    last = text.rstrip().splitlines()[-1]
    _, colon, sentence = last.partition(": ")
    return sentence if colon else last


class DatasetError(FairauditError):
    """A dataset could not be found, parsed or validated."""


class ModelLoadError(FairauditError):
    """A model file could not be loaded safely or does not match the dataset."""


class MetricInputError(FairauditError):
    """Labels, predictions or group arrays are inconsistent."""
