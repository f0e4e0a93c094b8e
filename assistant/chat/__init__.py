"""Chat: one conversation's turn (session), attachments, versions, reasoning, personas, escalation."""
