"""What every momo process shares, below the webhook edge: settings, the runtime, the
Flask surface every app is built on, and the protocol each provider adapter implements.

Imports only ``matcher``; ``ingest``, ``tasks``, ``api`` and ``momo`` build on it.
"""
