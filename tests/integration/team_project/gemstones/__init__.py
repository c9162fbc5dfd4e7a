"""The team's own code: how a diamond's price is estimated."""
