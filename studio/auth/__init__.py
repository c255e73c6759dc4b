"""Authentication and authorisation: password hashing and the pure permission rules."""
