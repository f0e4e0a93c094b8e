"""The chat screen's controllers: each owns one concern; the screen's actions and message handlers call them."""
