"""Screens of the chat UI (modal dialogs, model picker, settings, help)."""
