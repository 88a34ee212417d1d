"""Load generators and the small protocol clients they use."""
