"""Reports: :mod:`.build` makes a :class:`~gradekit.model.Report`, ``render/`` turns it into
what people and Gradescope read, :mod:`.write` puts it on disk atomically."""
