"""Contact lists: read, validate, normalise, de-duplicate (DESIGN §4 contact input)."""
