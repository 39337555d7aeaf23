"""The runner inside a Gradescope autograder (see :mod:`gradekit.gradescope`).

``run_autograder`` calls, as root::

    PYTHONPATH=/autograder/source python -m gradekit.gradescope_run \
        --source /autograder/source --submission /autograder/submission --results /autograder/results

It finds the notebook, grades it in-process with :func:`gradekit.worker.grade` under the
process backend, and writes ``results.json`` (Gradescope's schema) itself. The kernel runs
as ``gradekit-sandbox``, one of two ways, whichever the container allows:

* **namespaces** (the process backend as is, :mod:`gradekit.sandbox.confine`): new mount,
  network and PID namespaces; ``/autograder/source``, ``/autograder/results``,
  ``/autograder/submission``, ``/root`` and ``/home`` are covered by empty tmpfs; no network.
* **uid-drop**, where the container forbids namespaces (Docker's defaults: no
  CAP_SYS_ADMIN, seccomp refuses ``unshare``): the same unprivileged user, rlimits and
  ``no_new_privs``, while the secret folders are made ``0700 root``, so the kernel gets
  EACCES on them. The network cannot be taken away here; the report says which mode ran.
  After grading, every process of the sandbox user is killed before results are written.

Either way the trusted side alone writes ``results.json``; a ``results.json`` the notebook
wrote anywhere is ignored and reported.

``python -m gradekit.gradescope_run --drop SPEC -- CMD`` is the uid-drop launcher itself
(root drops to the sandbox user, then execs the kernel). It imports nothing heavy.
"""
from __future__ import annotations

import json
import os
import sys

CONFIG = "gradekit-autograder.json"
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


# -- the uid-drop launcher (runs as root, becomes the kernel) ----------------------------
def _drop(spec: dict, cmd: list[str]) -> None:
    import ctypes
    import resource
    import signal
    libc = ctypes.CDLL(None, use_errno=True)
    lim, mb = spec["limits"], 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    cpu = int(lim["total_timeout"] * max(1.0, lim["cpus"]) * 2 + 60)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    # Memory the kernel writes (heap, private mappings), not its address space: numpy and
    # torch reserve far more address space than they touch.
    resource.setrlimit(resource.RLIMIT_DATA, (lim["memory_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["pids"],) * 2)
    os.chdir(spec["work_dir"])
    os.setgroups([])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")
    if os.getuid() == 0 or os.geteuid() == 0:
        raise OSError("still root after dropping privileges")
    os.execve(cmd[0], cmd, dict(os.environ))


def _drop_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    cmd = argv[argv.index("--") + 1:]
    try:
        _drop(spec, cmd)
    except BaseException as exc:  # never run the kernel as root
        print(f"gradekit sandbox: could not drop privileges: {exc}", file=sys.stderr, flush=True)
    return 121


# -- the sandbox ------------------------------------------------------------------------
def make_sandbox():
    """A process sandbox that falls back to uid-drop where namespaces are refused."""
    import subprocess
    import tempfile
    from pathlib import Path

    from .sandbox.base import Job, Limits, SandboxUnavailable
    from .sandbox.process import ProcessSandbox

    class GradescopeSandbox(ProcessSandbox):
        mode = "unknown"

        def check(self) -> None:
            super().check()
            if not self.isolated:
                raise SandboxUnavailable("run_autograder must run as root (it runs the notebook as gradekit-sandbox)")
            ok, why = self._probe_namespaces()
            self.mode = "namespaces" if ok else "uid-drop"
            self.why = why

        def _probe_namespaces(self) -> tuple[bool, str]:
            """Run the real confine launcher once on ``python -c pass``."""
            with tempfile.TemporaryDirectory(prefix="gk-probe-") as tmp:
                os.chmod(tmp, 0o711)
                job = Job(id="probe", root=Path(tmp) / "job", limits=Limits(total_timeout=20))
                job.root.mkdir()
                self.prepare(job)
                cmd = ProcessSandbox.wrap(self, [sys.executable, "-c", "pass"], job)
                try:
                    proc = subprocess.run(cmd, env=self.environment(job), cwd=job.work_dir,
                                          capture_output=True, text=True, timeout=60)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    return False, str(exc)
                return proc.returncode == 0, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""

        def wrap(self, kernel_cmd: list[str], job: Job) -> list[str]:
            if self.mode == "namespaces":
                return super().wrap(kernel_cmd, job)
            uid, gid = self._ids
            lim = job.limits
            spec = {"uid": uid, "gid": gid, "work_dir": str(job.work_dir),
                    "limits": {"memory_mb": lim.memory_mb, "pids": lim.pids, "file_size_mb": lim.file_size_mb,
                               "total_timeout": lim.total_timeout, "cpus": lim.cpus}}
            return [sys.executable, "-m", "gradekit.gradescope_run", "--drop", json.dumps(spec), "--", *kernel_cmd]

    return GradescopeSandbox()


def kill_user_processes(uid: int, rounds: int = 5) -> int:
    """SIGKILL every process of ``uid`` (what a notebook left running in uid-drop mode)."""
    import signal
    import time
    killed = 0
    for _ in range(rounds):
        found = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as fh:
                    uids = next(line for line in fh if line.startswith("Uid:")).split()[1:]
            except (OSError, StopIteration):
                continue
            if str(uid) in uids:
                found += 1
                try:
                    os.kill(int(entry), signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
        if not found:
            break
        time.sleep(0.2)
    return killed


# -- finding the notebook ---------------------------------------------------------------
class NoNotebook(Exception):
    """The submission holds no notebook to grade; the message is for the student."""


def find_notebook(submission_dir, assignment_id: str):
    """The submitted notebook's path: the only ``.ipynb``, or among several the one whose
    metadata names ``assignment_id``. Links and checkpoints are ignored."""
    from pathlib import Path
    root = Path(submission_dir)
    found, others = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if name.startswith(".") or p.is_symlink():
                continue
            (found if name.lower().endswith(".ipynb") else others).append(rel)
    if not found:
        listing = ", ".join(f"`{o}`" for o in others[:10]) or "nothing"
        raise NoNotebook(f"no Jupyter notebook (`.ipynb`) was found in your submission (it holds {listing}). "
                         "Submit your `.ipynb` file.")
    if len(found) == 1:
        return root / found[0]
    named = []
    for rel in found:
        try:
            meta = json.loads((root / rel).read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("gradekit"), dict) and meta["gradekit"].get("assignment") == assignment_id:
            named.append(rel)
    if len(named) == 1:
        return root / named[0]
    which = "none of them is" if not named else f"{len(named)} of them are"
    raise NoNotebook(f"your submission holds {len(found)} notebooks ({', '.join(f'`{f}`' for f in found)}) and "
                     f"{which} marked as this assignment's ({assignment_id!r}) in its metadata. "
                     "Submit only the notebook you want graded (the one made from the assignment's template).")


# -- the runner -------------------------------------------------------------------------
def _private(path) -> None:
    """Root-only: the uid-drop mode's barrier (harmless under namespaces)."""
    try:
        os.chown(path, 0, 0)
        os.chmod(path, 0o700)
    except FileNotFoundError:
        pass


def _make_user() -> None:
    """Create the sandbox user with a random uid, unless it exists. Containers on one host
    share uids (no user namespace), and RLIMIT_NPROC counts per uid: with the usual first
    system uid, every gradekit autograder on a Gradescope host (and any host process of that
    uid) would share one process limit, and one notebook's fork bomb would starve the others."""
    import pwd
    import secrets as _secrets
    import shutil
    import subprocess
    from .sandbox.process import SANDBOX_USER
    try:
        pwd.getpwnam(SANDBOX_USER)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    for _ in range(5):
        uid = 200_000 + _secrets.randbelow(1_000_000_000)
        proc = subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                               "/usr/sbin/nologin", "--uid", str(uid), "--user-group", SANDBOX_USER],
                              capture_output=True, text=True)
        if proc.returncode in (0, 9):
            return
    print(f"gradekit: could not create {SANDBOX_USER} with a random uid ({proc.stderr.strip()}); using the default")


def run(source, submission_dir, results_dir) -> dict:
    """Grade the submission and write ``results.json``; returns the report."""
    import tempfile
    from pathlib import Path

    from . import intake
    from . import report as reports
    from .spec import load
    from .worker import grade

    source, submission_dir, results_dir = Path(source), Path(submission_dir), Path(results_dir)
    config = json.loads((source / CONFIG).read_text())
    assignment = load(config["assignment"], source)
    results_dir.mkdir(parents=True, exist_ok=True)
    for d in (source, results_dir, submission_dir):
        _private(d)
    results = results_dir / "results.json"
    results.unlink(missing_ok=True)

    _make_user()
    sandbox = make_sandbox()
    sandbox.check()
    if sandbox.mode != "namespaces":
        # Nothing the trusted side writes (logs, job files) is readable by the kernel's user.
        # Not under namespaces: confine creates mount points, which must stay traversable.
        os.umask(0o077)
    print(f"gradekit {config.get('gradekit')}: grading {assignment.id} with the process sandbox, "
          f"mode {sandbox.mode}" + (f" (namespaces refused: {sandbox.why})" if sandbox.mode != "namespaces" else ""))
    try:
        path = find_notebook(submission_dir, assignment.id)
        sub = intake.load_bytes(path.relative_to(submission_dir).as_posix(), path.read_bytes())
    except NoNotebook as exc:
        sub = intake.Submission(source="(submission)", sha256="", rejected=str(exc))
    if sub.notebook is None:
        rep = reports.build(assignment, submission_id=sub.id, sha256=sub.sha256, sources=[sub.source],
                            status="rejected", reason=sub.rejected)
    else:
        hidden = tuple(Path(p) for p in (source, results_dir, submission_dir))
        job_parent = Path(tempfile.mkdtemp(prefix="gk-gs-"))
        os.chmod(job_parent, 0o711)
        try:
            rep = grade(assignment, sub.notebook, sha256=sub.sha256, sources=[sub.source], submission_id=sub.id,
                        sandbox=sandbox, job_root=job_parent / "job", limits=assignment.limits, hidden=hidden,
                        secret=config.get("secret", ""))
        except Exception as exc:  # the harness failed, not the notebook: say so, score nothing
            import traceback
            traceback.print_exc()
            rep = reports.build(assignment, submission_id=sub.id, sha256=sub.sha256, sources=[sub.source],
                                status="error", reason=f"the autograder failed ({type(exc).__name__}: {exc}); "
                                "course staff can see why in the autograder output")
        finally:
            if sandbox.mode != "namespaces":
                n = kill_user_processes(sandbox._ids[0])
                if n:
                    print(f"gradekit: killed {n} process(es) the notebook left running")
            import shutil
            shutil.rmtree(job_parent, ignore_errors=True)
        if results.exists() or results.is_symlink():  # cannot happen unless the barrier failed
            results.unlink()
            rep["notes"].append("Something other than the autograder wrote `/autograder/results/results.json`; "
                                "it was ignored: scores come only from the graders.")
    rep["sandbox"] = dict(rep.get("sandbox") or {}, gradescope_mode=sandbox.mode)
    out = reports.to_gradescope(rep)
    out["extra_data"] = {"gradekit": config.get("gradekit"), "assignment": assignment.id, "status": rep["status"],
                         "sha256": rep["submission"]["sha256"], "seed": rep.get("seed"), "sandbox": sandbox.mode,
                         "source": rep["submission"]["sources"]}
    reports.write_atomic(results, json.dumps(out, indent=2))
    os.chmod(results, 0o644)
    from .report import summary_table
    print(summary_table([rep], assignment))
    for note in rep.get("notes", []):
        print(f"note: {note}")
    return rep


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--drop":
        return _drop_main(argv[1:])
    import argparse
    p = argparse.ArgumentParser(prog="python -m gradekit.gradescope_run")
    p.add_argument("--source", default="/autograder/source")
    p.add_argument("--submission", default="/autograder/submission")
    p.add_argument("--results", default="/autograder/results")
    args = p.parse_args(argv)
    run(args.source, args.submission, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
