"""What every layer shares: the one user-error type, the one atomic write and YAML reader, the one schema renderer."""
