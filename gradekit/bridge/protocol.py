"""The bridge's protocol: one table of names and limits, shared by the host and the shim.

The host (:mod:`gradekit.bridge.host`) sends requests as JSON; the kernel-side shim
(:file:`shim.py`, sent to the kernel as text, never imported here) answers with one
``display_data`` message of :data:`MIME`. Values are JSON with a few tagged objects
(:data:`TAGS`); arrays are ``.npy`` bytes in base64, read with ``allow_pickle=False``.
The shim receives :data:`SHIM_LIMITS` when it is installed, so both sides cut and nest
by the same numbers.
"""
from __future__ import annotations

MIME = "application/vnd.gradekit.reply+json"
#: Largest reply the host accepts, as received (base64 and JSON included).
MAX_REPLY_BYTES = 512 * 1024 * 1024
#: Deepest nesting of lists, tuples and dicts either side sends.
MAX_DEPTH = 32
#: The tagged objects a value may contain (``{"__tuple__": [...]}`` and so on).
TAGS = ("__ndarray__", "__tuple__", "__dict__", "__float__", "__bigint__", "__module__",
        "__unsupported__", "__handle__", "__params_of__")
#: What the shim is told when installed: the same limits, by name.
SHIM_LIMITS = {
    "mime": MIME,
    "max_depth": MAX_DEPTH,
    "repr_chars": 200,          # a value that cannot cross comes back as its type and a short repr
    "module_repr_chars": 4000,  # an nn.Module's repr
    "message_chars": 2000,      # the message of an exception the student's code raised
    "max_files": 100,           # paths listed by the "files" request
    "max_layers": 1000,         # layers a model's structure lists, and layer calls its forward records
    "max_batch": 4096,          # inputs in one forward request (bridge.models sends larger inputs in batches)
    "max_epochs": 10000,        # epochs a scheduler's learning rates are followed for
}
#: The name of the exception shim_torch.py raises to refuse a request ("`opt` is not a
#: torch.optim optimizer (its type is list)"); its message is shown to the student as it is.
REFUSED = "GradekitRefusal"


class StudentError(AssertionError):
    """Something on the student's side stops a check; the message is for the student.

    ``expected`` is the part of the message that reveals the right answer ("expected: [1 2]");
    ``withheld`` replaces it where the test is not visible. The grading plugin decides which
    (per test, from its visibility), so a grader never has to.
    """

    def __init__(self, message: str = "", *, expected: str = "", withheld: str = ""):
        super().__init__(message)
        self.message, self.expected, self.withheld = str(message), str(expected), str(withheld)

    def for_student(self, show_expected: bool) -> str:
        return self.message + (self.expected if show_expected else self.withheld)

    def __str__(self) -> str:
        return self.for_student(True)


class BridgeDecodeError(StudentError):
    """The kernel's reply is not well-formed data."""
