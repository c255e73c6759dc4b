"""flows: arrives with its own issue."""
