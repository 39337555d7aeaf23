"""Tools for instructors and staff: the student template (:mod:`.assign`), the student
bundle (:mod:`.bundle`), a new course (:mod:`.init`) and the Gradescope autograder zip
(:mod:`.autograder_zip`)."""
