"""The report's summary in plain words: what happened, when the scores alone do not say.

"none of the 14 names the assignment asks for is defined; the first error was
ModuleNotFoundError: No module named 'tensorflow' in code cell 3".
"""
from __future__ import annotations

from ..model import ExecutionResult, Platform, TestResult
from ..sandbox.base import Sandbox
from ..sandbox.environment import differences, kernel_pins
from ..spec import Assignment


def required_names(assignment: Assignment) -> list[str]:
    names: list[str] = []
    for q in assignment.questions:
        if not q.manual:
            names += [n for n in q.defines if n not in names]
    return names


def defined_names(bridge, assignment: Assignment) -> dict[str, bool]:
    """Which of the names the assignment asks for the notebook defines ({} when the kernel is gone)."""
    names = required_names(assignment)
    if not names:
        return {}
    try:
        return bridge.defined(names)
    except AssertionError:  # the kernel is gone, or will not say: the execution summary says why
        return {}


def platform(bridge) -> Platform | None:
    """What the kernel says of its Python, torch and device (None when it will not say)."""
    try:
        seen = bridge.platform()
    except AssertionError:  # the kernel is gone, or will not say
        return None
    if not isinstance(seen, dict):
        return None
    return Platform(**{k: str(seen.get(k, ""))[:200] for k in ("python", "torch", "cuda", "device", "driver", "tf32")})


def _first_error(execution: ExecutionResult) -> str:
    for c in execution.cells:
        if c.status in ("error", "died", "timeout") and c.error:
            return f"in code cell {c.number or c.index + 1} ({c.status}): {c.error[:300]}"
    return ""


def reason(assignment: Assignment, execution: ExecutionResult, defined: dict[str, bool],
           tests: list[TestResult]) -> str | None:
    parts = []
    if execution.status == "failed_to_start":
        return execution.message
    missing = [n for n, ok in defined.items() if not ok]
    if defined and len(missing) == len(defined):
        parts.append(f"none of the {len(defined)} names the assignment asks for is defined"
                     if len(defined) > 1 else f"`{missing[0]}`, the name the assignment asks for, is not defined")
    elif missing:
        shown = ", ".join(f"`{n}`" for n in missing[:6]) + (" …" if len(missing) > 6 else "")
        parts.append(f"{len(missing)} of the {len(defined)} names the assignment asks for "
                     f"{'is' if len(missing) == 1 else 'are'} not defined ({shown})")
    first = _first_error(execution)
    if first and (parts or execution.status != "completed"):
        parts.append(f"the first problem was {first}")
    if not parts:
        return None
    text = "; ".join(parts)
    return text[0].upper() + text[1:]


def environment_differences(sandbox: Sandbox, torch: bool = True) -> list[str]:
    return differences(kernel_pins(torch), sandbox.kernel_packages())
