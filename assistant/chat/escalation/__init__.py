"""Escalation: the router's decision and the remote teacher it may send a question to."""
