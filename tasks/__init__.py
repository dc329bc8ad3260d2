"""The Celery side of momo: ``celery -A tasks worker`` finds the app as ``tasks.app``."""

from tasks.celery_app import app

__all__ = ["app"]
