"""Tables and plots from records (pure data in, text or figures out)."""
