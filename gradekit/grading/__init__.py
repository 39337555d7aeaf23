"""Grading: pytest over an assignment's graders, in the trusted process.

What grader authors import is re-exported here from :mod:`.api`::

    from gradekit.grading import question, assert_close, assert_equal, expect_array, StudentError

:mod:`.plugin` is the pytest plugin (fixtures, per-test results; also ``pytest graders/ID
--gradekit-notebook NB.ipynb``), :mod:`.scoring` the one owner of points, :mod:`.runner`
runs pytest for one submission, :mod:`.seeds` makes each submission's inputs fresh.
"""
from .api import (VISIBILITIES, Credit, Handle, ModelStructure, ModelView, ModuleSummary, OptimizerConfig,
                  SchedulerConfig, StepResult, StudentError, TorchArray, Unsupported, accuracy, as_torch,
                  assert_close, assert_equal, expect_array, predict, question)

__all__ = ["question", "assert_close", "assert_equal", "expect_array", "Credit", "StudentError",
           "as_torch", "TorchArray", "ModuleSummary", "Unsupported", "Handle", "VISIBILITIES",
           "ModelView", "ModelStructure", "OptimizerConfig", "SchedulerConfig", "StepResult",
           "predict", "accuracy"]
