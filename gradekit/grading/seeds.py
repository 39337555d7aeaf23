"""Fresh inputs for every submission, reproducible for each one.

A submission's seed comes from its notebook's SHA-256, the assignment and the course
secret; each test's ``rng`` from that seed and the test's node id. The seed is recorded in
the report, so a grading can be reproduced, and a hard-coded answer fails on the next
submission's inputs.
"""
from __future__ import annotations

import hashlib


def submission_seed(sha256: str, assignment_id: str, secret: str = "") -> int:
    digest = hashlib.sha256(f"{secret}:{assignment_id}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_seed(submission_seed: int, nodeid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{submission_seed}:{nodeid}".encode()).digest()[:8], "little")
