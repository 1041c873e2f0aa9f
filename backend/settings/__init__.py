"""The server's settings, in parts; `backend.config` is the one place to import them from."""
