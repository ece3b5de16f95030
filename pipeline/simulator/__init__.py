"""The Sinch simulator: a faithful stand-in for the API parts capaudit uses (DESIGN §6)."""
