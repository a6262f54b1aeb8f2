"""Durable files: crash-safe writes and the quarantine of unreadable files."""
