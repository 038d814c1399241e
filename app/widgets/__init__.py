"""Widgets of the main window: transcript, level meters, status bar."""
