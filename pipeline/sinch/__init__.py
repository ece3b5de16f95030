"""Client for the parts of the Sinch Conversation API capaudit uses (see shared/reference)."""
