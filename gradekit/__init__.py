"""gradekit: grade deep-learning and computer-vision notebooks safely.

The pipeline, a package per stage: :mod:`~gradekit.intake` (validate, find submitters) →
:mod:`~gradekit.sandbox` (where the untrusted kernel runs) → :mod:`~gradekit.kernel` (run
the notebook's cells) → :mod:`~gradekit.bridge` (graders read values and call functions,
as data) → :mod:`~gradekit.grading` (pytest over the hidden graders) →
:mod:`~gradekit.report` (report.json, results.json, feedback, gradebook). :mod:`~gradekit.run`
drives the stages; :mod:`~gradekit.tools` serve instructors; the records that cross stages
are in :mod:`~gradekit.model`. Grader authors import :mod:`gradekit.grading`.
"""
__version__ = "0.1.0"
