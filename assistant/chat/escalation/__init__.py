"""Escalation: handing a question the on-device model would likely get wrong to a remote teacher.

Owns the router's decision (``router``), the remote teacher's client (``teacher``) and the flow of an
escalated turn (``flow``: decide, ask approval, send, fall back to the student, record the route).
Loaded only when escalation is on: ``teacher`` loads the HTTP client (httpx).

May import what ``assistant.chat`` may (the root, ``config``, ``text_safety``, ``storage``, ``models``)
and the rest of ``assistant.chat`` except ``session``, which imports it.
"""
