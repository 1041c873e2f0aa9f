"""`make fuzz`: schemathesis, then hostile requests of our own, against a real server."""
