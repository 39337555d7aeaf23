"""The bridge: graders reach the student's kernel as data only. :mod:`.protocol` (names and
limits both sides share), :mod:`.values` and :mod:`.codec` (values as data), :mod:`.host`
(the :class:`~gradekit.bridge.host.Submission` graders use), ``shim.py`` (the kernel side,
sent as text, never imported here)."""
