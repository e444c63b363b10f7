"""Config files for the check-config and routes tests, and a callback module that fails to import."""
