"""Stand-ins for development and tests: the Graph API simulator, the mail catcher, seed data."""
