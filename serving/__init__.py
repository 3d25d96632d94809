"""Ray Serve applications and the inference code shared with training.

``serving.app:build`` is the import path for ``serve run``, ``serve deploy`` and a KubeRay
RayService. May import ``cluster``, never ``jobs``.
"""
