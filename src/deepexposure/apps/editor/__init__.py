"""``deepexposure edit``: adjust a recipe by eye in the browser (a local web app).

:mod:`deepexposure.apps.editor.session` holds the photo, the recipe, the screen-size preview and the save (no web code);
:mod:`deepexposure.apps.editor.app` is the Starlette app and the uvicorn server (the ``edit`` extra); the page is plain
HTML/JS/CSS in ``static/`` (no build step).
"""

from __future__ import annotations

from deepexposure.apps.editor.session import EditorError, EditSession, OutputExists, recipe_matches

__all__ = ["EditSession", "EditorError", "OutputExists", "recipe_matches"]
