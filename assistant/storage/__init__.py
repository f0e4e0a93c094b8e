"""Storage: the history database (sqlite-utils, numbered migrations) and atomic file writes."""
