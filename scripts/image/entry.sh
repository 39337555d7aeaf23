#!/bin/sh
# Entry point of a gradekit grading container (runs as the unprivileged student user).
#
# 1. Copy the submission's files (bind-mounted read-only at /mnt/submission, when the
#    grader supplies any) into the working directory, a size-limited tmpfs.
# 2. Run the kernel under a hard wall-clock deadline (GRADEKIT_DEADLINE seconds). The
#    grader also kills the container from the host at its own deadline; this one is the
#    backstop for a grader that died without cleaning up.
set -u
# Sockets the kernel creates in the IPC folder must be writable by a grader that is not
# root (only the grader can reach that folder on the host).
umask 000
if [ -d /mnt/submission ]; then
    cp -R /mnt/submission/. . 2>/dev/null || true
fi
if [ -n "${GRADEKIT_DEADLINE:-}" ]; then
    exec timeout -s KILL "$GRADEKIT_DEADLINE" "$@"
fi
exec "$@"
