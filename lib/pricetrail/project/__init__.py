"""The project itself: its configuration (``params.yaml``, ``stockcodes.yaml``, profiles), its paths, files written
whole or not at all, ``dvc.lock`` and git, DVC as a command, the locks two commands share, and the stage runner.

Every other subpackage builds on this one; it imports none of them.
"""
