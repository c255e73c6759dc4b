"""widgets: arrives with its own issue."""
