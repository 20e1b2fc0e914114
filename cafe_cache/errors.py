"""The one base class for errors a user can fix; the CLI prints them as one line, no traceback."""


class CafeError(Exception):
    """Bad input, a missing file, a wrong cache, a bad flag: the message says what to do."""


class RaisedOnRankZero(CafeError):
    """Raised on the other processes of a torchrun launch when rank 0 stopped with a CafeError, so
    they stop too; rank 0 prints the message, they stay quiet."""


# Modules of the optional ``predict`` extra (setup.cfg): video (cv2), the LBP detector (skimage), ONNX.
PREDICT_EXTRA_MODULES = ("cv2", "onnx", "onnxruntime", "skimage")
PREDICT_EXTRA_HINT = "pip install 'cafe-fer[predict]'"


class MissingExtra(CafeError):
    """A module of an optional extra is not installed: it stops the command (it would fail every input alike)."""


def missing_extra(error: ModuleNotFoundError) -> CafeError | None:
    """The one-line error for a module of an optional extra that is not installed; None for any other."""
    top = (error.name or "").split(".")[0]
    if top not in PREDICT_EXTRA_MODULES:
        return None
    return MissingExtra(f"the Python module '{top}' is not installed: video, the LBP face detector and ONNX "
                     f"(`cafe predict`, `cafe export`, the Python API) need the predict extra. Install it with: "
                     f"{PREDICT_EXTRA_HINT}")
