"""Storage: every SQL statement of the daemon lives in this subpackage."""
