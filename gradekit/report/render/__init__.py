"""Renderings of a report: Gradescope's results.json, Markdown and HTML feedback, the
class gradebook and the terminal summary. Each reads the Report, never another rendering."""
