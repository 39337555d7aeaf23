"""gradekit: grade deep-learning and computer-vision notebooks safely.

The pipeline, one module per stage: :mod:`~gradekit.intake` (validate, hash) →
:mod:`~gradekit.sandbox` + :mod:`~gradekit.kernel` (run the student's kernel confined) →
:mod:`~gradekit.execute` (run the notebook's cells) → :mod:`~gradekit.bridge` (graders read
values and call functions, as data) → :mod:`~gradekit.grading` (pytest over the hidden
graders) → :mod:`~gradekit.report` (report.json, results.json, feedback, gradebook).
Grader authors use :mod:`gradekit.grader`.
"""
__version__ = "0.1.0"
